//go:build unix

package fileperm

import (
	"bufio"
	"io/fs"
	"os"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// IDs returns the owner and group of fi (-1 when unknown).
func IDs(fi fs.FileInfo) (uid, gid int) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid), int(st.Gid)
	}
	return -1, -1
}

// UserName is the name of uid, or the number.
func UserName(uid int) string {
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return u.Username
	}
	return strconv.Itoa(uid)
}

// GroupName is the name of gid, or the number.
func GroupName(gid int) string {
	if g, err := user.LookupGroupId(strconv.Itoa(gid)); err == nil {
		return g.Name
	}
	return strconv.Itoa(gid)
}

// GroupMembers lists the users of group gid: its members in /etc/group and
// the users whose primary group it is in /etc/passwd, sorted. os/user cannot
// list a group's members, so the files are read directly; users known only
// to a directory service (LDAP, SSSD) are not listed.
func GroupMembers(gid int) []string {
	var out []string
	id := strconv.Itoa(gid)
	eachLine("/etc/group", func(f []string) {
		if len(f) >= 4 && f[2] == id {
			for _, m := range strings.Split(f[3], ",") {
				if m = strings.TrimSpace(m); m != "" {
					out = append(out, m)
				}
			}
		}
	})
	eachLine("/etc/passwd", func(f []string) {
		if len(f) >= 4 && f[3] == id && f[0] != "" {
			out = append(out, f[0])
		}
	})
	slices.Sort(out)
	return slices.Compact(out)
}

// eachLine calls fn with the ':'-separated fields of each line of a
// passwd-format file; a missing file has no lines.
func eachLine(path string, fn func([]string)) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fn(strings.Split(line, ":"))
	}
}

// CanKeepIDs reports whether this process can give a new file the owner and
// group of fi: as root always; otherwise only when it owns fi and belongs to
// its group (the kernel refuses any other chown, and WriteFileAtomic then
// leaves the new file ours, with our group).
func CanKeepIDs(fi fs.FileInfo) bool {
	uid, gid := IDs(fi)
	if uid < 0 || os.Geteuid() == 0 {
		return true
	}
	if uid != os.Geteuid() {
		return false
	}
	if gid == os.Getegid() {
		return true
	}
	groups, _ := os.Getgroups()
	return slices.Contains(groups, gid)
}
