package sqlite

import "github.com/rekeyhq/rekey/internal/safefile"

// checkFiles refuses a store whose file, or a journal SQLite keeps beside it
// (-wal, -shm, -journal), is a symbolic link, a hard link, not a regular
// file, or another user's (a *rekey.Error, CodeUnsafe, naming the file).
//
// SQLite opens those files itself, after this check, by name. Its unix VFS
// opens them with O_NOFOLLOW, so a symbolic link planted between the check
// and the open makes the open fail rather than write through it; a regular
// file of another user or a hard link planted in that window is not caught.
// Only someone who can write to the store's folder (0700, the user's own)
// can plant anything there.
func checkFiles(path string) error { return safefile.CheckStore(path) }
