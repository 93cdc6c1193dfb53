package main

import (
	"fmt"
	"io/fs"
	"strings"
)

// Secret files (the .env targets, the store, the master key file) are never
// readable by others. A rewritten .env keeps the old file's owner, group and
// owner and group bits — a service may read it through its group — and loses
// every bit for others; no bit is ever added.

// secretMode is the mode a rewritten secret file gets from the old one's:
// its permission bits less every bit for others.
func secretMode(old fs.FileMode) fs.FileMode { return old.Perm() &^ 0o007 }

// fileAccess describes a file's mode, owner and group ("0640 root:daemon")
// and who can read it, root aside ("root, group daemon (daemon, www-data)").
func fileAccess(fi fs.FileInfo) (ids, readers string) {
	uid, gid := fileIDs(fi)
	ids = fmt.Sprintf("%04o", fi.Mode().Perm())
	if uid >= 0 {
		ids += " " + userName(uid) + ":" + groupName(gid)
	}
	return ids, strings.Join(fileReaders(fi), ", ")
}

// fileReaders lists who can read the file besides root: the owner, the group
// and its members, every user.
func fileReaders(fi fs.FileInfo) []string {
	perm := fi.Mode().Perm()
	uid, gid := fileIDs(fi)
	var out []string
	if perm&0o400 != 0 && uid >= 0 {
		out = append(out, userName(uid))
	}
	if perm&0o040 != 0 && gid >= 0 {
		members := groupMembers(gid)
		m := "no members"
		if len(members) > 0 {
			m = strings.Join(members, ", ")
		}
		out = append(out, fmt.Sprintf("group %s (%s)", groupName(gid), m))
	}
	if perm&0o004 != 0 {
		out = append(out, "every user")
	}
	if len(out) == 0 {
		out = append(out, "root only")
	}
	return out
}
