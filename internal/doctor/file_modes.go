package doctor

import (
	"fmt"
	"os"
	"strings"

	"github.com/rekeyhq/rekey/internal/config"
	"github.com/rekeyhq/rekey/internal/fileperm"
)

// checkFileModes: no secret file is open to others (FAIL); the store and
// the master key file are 0600 or stricter (FAIL: nothing but rekey reads
// them); a .env target readable by its group is a WARN (a service may read it
// through its group: rotations keep those bits). The detail says who can
// read each file.
func (d *run) checkFileModes() Check {
	const name = "file-modes"
	type secretFile struct {
		path   string
		target bool // a .env target (else the store or the key file)
	}
	var files []secretFile
	for _, t := range d.targets {
		files = append(files, secretFile{t.Path, true})
	}
	files = append(files, secretFile{d.cfg.Store.Path, false})
	if p, ok := strings.CutPrefix(d.cfg.Store.MasterKey, config.MasterKeyFile); ok {
		files = append(files, secretFile{p, false})
	}
	var bad, badNames, groupRead, missing, who []string
	fix := map[string]string{}
	for _, f := range files {
		rel := d.rel(f.path)
		fi, err := os.Stat(f.path)
		if err != nil {
			missing = append(missing, rel)
			continue
		}
		perm := fi.Mode().Perm()
		ids, readers := fileperm.Access(fi)
		who = append(who, rel+" ("+ids+"): "+readers)
		switch {
		case perm&0o007 != 0 || (!f.target && perm&0o077 != 0):
			bad = append(bad, fmt.Sprintf("%s is %04o", rel, perm))
			badNames = append(badNames, rel)
			if f.target && perm&0o070 != 0 {
				fix[rel] = fmt.Sprintf("chmod 600 %s (or chmod %03o %s if a service reads it through its group)", rel, fileperm.SecretMode(perm), rel)
			} else {
				fix[rel] = "chmod 600 " + rel
			}
		case perm&0o070 != 0:
			_, gid := fileperm.IDs(fi)
			groupRead = append(groupRead, fmt.Sprintf("%s is %04o: group %s can read it", rel, perm, fileperm.GroupName(gid)))
		}
	}
	readers := "who can read them (root aside): " + strings.Join(who, "; ")
	if len(bad) > 0 {
		var fixes []string
		for _, n := range badNames {
			fixes = append(fixes, fix[n])
		}
		f := strings.Join(fixes, "; ")
		if len(fixes) > 1 && !strings.Contains(f, "(") {
			f = "chmod 600 " + strings.Join(badNames, " ")
		}
		return fail(name, strings.Join(bad, ", ")+" — "+readers, f)
	}
	if len(missing) > 0 {
		return warn(name, "cannot stat "+strings.Join(missing, ", "), "create them, or fix their paths in rekey.yaml")
	}
	if len(groupRead) > 0 {
		return warn(name, strings.Join(groupRead, ", ")+" — "+readers,
			"make sure only the users of the service that reads it are in that group; if none reads it through its group, chmod 600 it")
	}
	return pass(name, fmt.Sprintf("%d files are 0600 or stricter — %s", len(files), readers))
}
