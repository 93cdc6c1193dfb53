//go:build !unix

package main

import (
	"io/fs"
	"strconv"
)

func fileIDs(fs.FileInfo) (uid, gid int) { return -1, -1 }

func userName(uid int) string { return strconv.Itoa(uid) }

func groupName(gid int) string { return strconv.Itoa(gid) }

func groupMembers(int) []string { return nil }

func canKeepIDs(fs.FileInfo) bool { return true }
