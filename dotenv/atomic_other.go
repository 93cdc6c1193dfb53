//go:build !unix

package dotenv

import "io/fs"

func fileOwner(fs.FileInfo) (uid, gid int) { return -1, -1 }

// syncDir is a no-op where directories cannot be synced.
func syncDir(string) error { return nil }
