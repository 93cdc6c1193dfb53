//go:build !unix

package dotenv

// syncDir is a no-op where directories cannot be synced.
func syncDir(string) error { return nil }
