// Package fileperm says who can read a file (mode, owner, group and its
// members) and what mode a rewritten secret file gets.
package fileperm

import (
	"fmt"
	"io/fs"
	"strings"
)

// Secret files (the .env targets, the store, the master key file) are never
// readable by others. A rewritten .env keeps the old file's owner, group and
// owner and group bits — a service may read it through its group — and loses
// every bit for others; no bit is ever added.

// SecretMode is the mode a rewritten secret file gets from the old one's:
// its permission bits less every bit for others.
func SecretMode(old fs.FileMode) fs.FileMode { return old.Perm() &^ 0o007 }

// Access describes a file's mode, owner and group ("0640 root:daemon")
// and who can read it, root aside ("root, group daemon (daemon, www-data)").
func Access(fi fs.FileInfo) (ids, readers string) {
	uid, gid := IDs(fi)
	ids = fmt.Sprintf("%04o", fi.Mode().Perm())
	if uid >= 0 {
		ids += " " + UserName(uid) + ":" + GroupName(gid)
	}
	return ids, strings.Join(Readers(fi), ", ")
}

// Readers lists who can read the file besides root: the owner, the group
// and its members, every user.
func Readers(fi fs.FileInfo) []string {
	perm := fi.Mode().Perm()
	uid, gid := IDs(fi)
	var out []string
	if perm&0o400 != 0 && uid >= 0 {
		out = append(out, UserName(uid))
	}
	if perm&0o040 != 0 && gid >= 0 {
		members := GroupMembers(gid)
		m := "no members"
		if len(members) > 0 {
			m = strings.Join(members, ", ")
		}
		out = append(out, fmt.Sprintf("group %s (%s)", GroupName(gid), m))
	}
	if perm&0o004 != 0 {
		out = append(out, "every user")
	}
	if len(out) == 0 {
		out = append(out, "root only")
	}
	return out
}
