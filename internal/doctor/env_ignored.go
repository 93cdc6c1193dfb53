package doctor

import (
	"strings"
)

// checkEnvIgnored: every .env target inside the repository is ignored by git.
func (d *run) checkEnvIgnored() Check {
	const name = "env-ignored"
	if d.git == nil {
		return d.noGit(name)
	}
	var bad, ok, outside []string
	for _, t := range d.targets {
		rel, in := d.git.inside(t.Path)
		if !in {
			outside = append(outside, d.rel(t.Path))
			continue
		}
		ign, err := d.git.ignored(rel)
		if err != nil {
			return warn(name, "skipped: "+err.Error(), "check that git works in "+d.git.root)
		}
		if ign {
			ok = append(ok, rel)
		} else {
			bad = append(bad, rel)
		}
	}
	if len(bad) > 0 {
		return fail(name, "not ignored by git: "+strings.Join(bad, ", "),
			"add "+strings.Join(bad, ", ")+" to .gitignore (and `git rm --cached` it if it is tracked)")
	}
	detail := "ignored by git: " + strings.Join(ok, ", ")
	if len(ok) == 0 {
		detail = "no .env target inside the repository"
	}
	if len(outside) > 0 {
		detail += "; outside the repository: " + strings.Join(outside, ", ")
	}
	return pass(name, detail)
}
