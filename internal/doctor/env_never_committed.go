package doctor

import (
	"fmt"
	"strings"
)

// checkEnvNeverCommitted: no commit in any ref ever contained a .env target.
func (d *run) checkEnvNeverCommitted() Check {
	const name = "env-never-committed"
	if d.git == nil {
		return d.noGit(name)
	}
	var bad []string
	var checked []string
	for _, t := range d.targets {
		rel, in := d.git.inside(t.Path)
		if !in {
			continue
		}
		out, err := d.git.run(d.git.root, "log", "--all", "--format=%H", "--", rel)
		if err != nil {
			if strings.Contains(err.Error(), "does not have any commits") {
				checked = append(checked, rel)
				continue
			}
			return warn(name, "skipped: "+err.Error(), "check that git works in "+d.git.root)
		}
		ids := strings.Fields(string(out))
		if len(ids) == 0 {
			checked = append(checked, rel)
			continue
		}
		first := ids[len(ids)-1] // log lists newest first
		bad = append(bad, fmt.Sprintf("%s is in the history since commit %s (%d commits touch it)", rel, first, len(ids)))
	}
	if len(bad) > 0 {
		return fail(name, strings.Join(bad, "; "),
			"every secret in it is exposed: `rekey rotate --all --emergency`, rotate the user-managed keys at their providers (`rekey set`), then `rekey scan --history`")
	}
	if len(checked) == 0 {
		return pass(name, "no .env target inside the repository")
	}
	return pass(name, "never committed in any ref: "+strings.Join(checked, ", "))
}
