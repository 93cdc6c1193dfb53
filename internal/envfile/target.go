// Package envfile is the .env Target: it publishes values to a .env file
// through the byte-preserving editor (dotenv), writes atomically, keeps the
// file's owner, group and owner/group bits, and removes what an interrupted
// write left behind.
package envfile

import (
	"context"
	"encoding/hex"
	"errors"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/dotenv"
	"github.com/rekeyhq/rekey/internal/fileperm"
)

// Target publishes to a .env file through the byte-preserving editor.
type Target struct {
	name string
	path string
	rel  string
	// warn, if set, reports what a write did to the file's access (rekey:
	// warning: …).
	warn func(format string, args ...any)
}

var _ rekey.Target = (*Target)(nil)

// New returns the target called name writing path; messages name it by its
// path relative to dir; warn (optional) hears what a write did to the
// file's access.
func New(name, path, dir string, warn func(format string, args ...any)) *Target {
	return &Target{name: name, path: path, rel: RelTo(dir, path), warn: warn}
}

// Rel is the file's path as messages show it.
func (t *Target) Rel() string { return t.rel }

func (t *Target) Name() string { return t.name + " (" + t.rel + ")" }

// Load reads and parses the file, for a command that only reads it.
func (t *Target) Load() (*dotenv.File, error) {
	f, _, err := t.load()
	return f, err
}

func (t *Target) load() (*dotenv.File, []byte, error) {
	data, err := os.ReadFile(t.path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil, rekey.Errorf(rekey.CodeNotFound, "%s does not exist", t.rel).WithHint("create it, or fix the path of target %s in rekey.yaml", t.name)
		}
		return nil, nil, rekey.Wrap(rekey.CodeInvalid, err, "read %s", t.rel)
	}
	f, err := dotenv.Parse(t.rel, data)
	if err != nil {
		return nil, nil, ParseErr(err)
	}
	return f, data, nil
}

// ParseErr maps a dotenv parse error to a rekey error (invalid input, its hint).
func ParseErr(err error) error {
	var pe *dotenv.ParseError
	if errors.As(err, &pe) {
		return &rekey.Error{Code: rekey.CodeInvalid, Msg: pe.Error(), Hint: pe.Hint}
	}
	return rekey.Wrap(rekey.CodeInvalid, err, "")
}

func (t *Target) Read(_ context.Context, keys []string) (map[string]rekey.Value, error) {
	f, _, err := t.load()
	if err != nil {
		return nil, err
	}
	out := map[string]rekey.Value{}
	for _, k := range keys {
		if v, ok := f.Get(k); ok {
			out[k] = rekey.NewValueString(v)
		}
	}
	return out, nil
}

func (t *Target) Write(_ context.Context, set map[string]rekey.Value, del []string) error {
	f, orig, err := t.load()
	if err != nil {
		return err
	}
	for _, k := range slices.Sorted(maps.Keys(set)) {
		if cur, ok := f.Get(k); ok && cur == set[k].RevealString() {
			continue // unchanged: keep its bytes exactly
		}
		if err := f.Set(k, set[k].RevealString()); err != nil {
			return rekey.Wrap(rekey.CodeInvalid, err, "write %s to %s", k, t.rel)
		}
	}
	for _, k := range del {
		f.Delete(k)
	}
	out := f.Bytes()
	if string(out) == string(orig) {
		return nil
	}
	// The new file keeps the old one's owner and group (WriteFileAtomic) and
	// its owner and group bits, so a service that reads it through its group
	// keeps working; others lose every bit.
	fi, err := os.Stat(t.path)
	if err != nil {
		return rekey.Wrap(rekey.CodeInvalid, err, "stat %s", t.rel)
	}
	perm := fileperm.SecretMode(fi.Mode())
	keepIDs := fileperm.CanKeepIDs(fi)
	if !keepIDs {
		// The new file will be ours, with our group: the old group's bits
		// would let another group read it.
		perm &^= 0o070
	}
	if err := dotenv.WriteFileAtomic(t.path, out, perm); err != nil {
		return rekey.Wrap(rekey.CodeInternal, err, "write %s", t.rel).WithHint("nothing was half-written: %s is as it was; fix the cause and run `rekey recover`", t.rel)
	}
	if t.warn != nil {
		if !keepIDs {
			uid, gid := fileperm.IDs(fi)
			t.warn("%s belonged to %s:%s, which this user cannot give a file to: it is now this user's, %04o", t.rel, fileperm.UserName(uid), fileperm.GroupName(gid), perm)
		} else if old := fi.Mode().Perm(); old != perm {
			t.warn("%s was open to every user (%04o): it is %04o now", t.rel, old, perm)
		}
		if perm&0o040 != 0 {
			_, gid := fileperm.IDs(fi)
			t.warn("%s is readable by group %s (%04o): its group bits are kept so that the service reading it keeps working; make sure only that service's users are in the group (`rekey doctor` lists them), or chmod 600 it", t.rel, fileperm.GroupName(gid), perm)
		}
	}
	return nil
}

// RelTo is path relative to dir when it is inside it, else path.
func RelTo(dir, path string) string {
	if r, err := filepath.Rel(dir, path); err == nil && r != ".." && !strings.HasPrefix(r, ".."+string(filepath.Separator)) {
		return r
	}
	return path
}

// RemoveStaleTemps deletes the temporary files that a rekey killed inside
// dotenv.WriteFileAtomic left beside the target ("."+base+".rekey-"+16 hex
// digits+".tmp"): they may hold a new secret value, in a file that is not
// ignored by git. Callers hold the environment lock, so no write of this
// target by rekey is in progress. It returns the names it removed.
func (t *Target) RemoveStaleTemps() ([]string, error) {
	target := t.path
	if p, err := filepath.EvalSymlinks(t.path); err == nil {
		target = p // the temporary file is written beside the link's target
	}
	dir, base := filepath.Split(target)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var removed []string
	for _, e := range ents {
		mid, ok := strings.CutPrefix(e.Name(), "."+base+".rekey-")
		if !ok {
			continue
		}
		h, ok := strings.CutSuffix(mid, ".tmp")
		if _, err := hex.DecodeString(h); !ok || len(h) != 16 || err != nil || !e.Type().IsRegular() {
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return removed, err
		}
		removed = append(removed, e.Name())
	}
	return removed, nil
}
