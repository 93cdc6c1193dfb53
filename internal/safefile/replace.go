package safefile

import (
	"os"
	"path/filepath"
)

// Replace writes data to a new file in the folder of path (mode 0600,
// created with O_EXCL under a name os.CreateTemp makes from pattern),
// syncs it and renames it over path: a reader sees the old content or the
// new, never a part of it, and a symbolic link at path is replaced, never
// followed. On failure the temporary file is removed and path is left as
// it was. The folder itself is not synced.
func Replace(path, pattern string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), pattern)
	if err != nil {
		return err
	}
	renamed := false
	defer func() {
		if !renamed {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	renamed = true
	return nil
}
