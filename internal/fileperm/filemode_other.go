//go:build !unix

package fileperm

import (
	"io/fs"
	"strconv"
)

func IDs(fs.FileInfo) (uid, gid int) { return -1, -1 }

func UserName(uid int) string { return strconv.Itoa(uid) }

func GroupName(gid int) string { return strconv.Itoa(gid) }

func GroupMembers(int) []string { return nil }

func CanKeepIDs(fs.FileInfo) bool { return true }
