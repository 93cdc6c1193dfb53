package doctor

import (
	"strings"

	"github.com/rekeyhq/rekey/internal/config"
)

// checkMasterKeyOutside: the master key file is outside the project folder
// and the git repository.
func (d *run) checkMasterKeyOutside() Check {
	const name = "master-key-outside"
	p, ok := strings.CutPrefix(d.cfg.Store.MasterKey, config.MasterKeyFile)
	if !ok {
		return pass(name, "the master key is not a file ("+d.cfg.Store.MasterKey+")")
	}
	if _, in := insideDir(d.cfg.Dir, p); in {
		return fail(name, "the master key file "+d.rel(p)+" is inside the project folder", "move it out (e.g. to ~/.config/rekey/keys/) and update store.master_key in rekey.yaml")
	}
	if d.git != nil {
		if _, in := d.git.inside(p); in {
			return fail(name, "the master key file "+p+" is inside the git repository "+d.git.root, "move it out of the repository and update store.master_key in rekey.yaml")
		}
	}
	return pass(name, "the master key file is outside the project and the repository")
}
