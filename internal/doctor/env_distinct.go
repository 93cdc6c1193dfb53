package doctor

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/rekeyhq/rekey"
)

// checkEnvDistinct: no secret has the same current value in two environments.
func (d *run) checkEnvDistinct() Check {
	const name = "env-distinct"
	// secret name → fingerprint → environments
	shared := map[string]map[string][]string{}
	var envs []string
	err := d.st.View(d.ctx, func(tx rekey.Tx) error {
		var err error
		envs, err = tx.Environments()
		if err != nil {
			return err
		}
		for _, env := range envs {
			cur, err := tx.AllLabeled(env, rekey.LabelCurrent)
			if err != nil {
				return err
			}
			for n, v := range cur {
				if shared[n] == nil {
					shared[n] = map[string][]string{}
				}
				shared[n][v.Fingerprint] = append(shared[n][v.Fingerprint], env)
			}
		}
		return nil
	})
	if err != nil {
		return warn(name, "skipped: "+err.Error(), "run `rekey status` to see why the store cannot be read")
	}
	if len(envs) < 2 {
		return pass(name, fmt.Sprintf("%d environment in the store: nothing to compare", len(envs)))
	}
	var bad []string
	for _, n := range slices.Sorted(maps.Keys(shared)) {
		for _, fp := range slices.Sorted(maps.Keys(shared[n])) {
			if e := shared[n][fp]; len(e) > 1 {
				sort.Strings(e)
				bad = append(bad, fmt.Sprintf("%s is the same in %s", n, strings.Join(e, ", ")))
			}
		}
	}
	if len(bad) > 0 {
		return fail(name, strings.Join(bad, "; "), "rotate it in all but one of them: `rekey rotate NAME -e ENV` (user-managed keys: issue one per environment, `rekey set NAME -e ENV`)")
	}
	return pass(name, fmt.Sprintf("current values differ across %s", strings.Join(envs, ", ")))
}
