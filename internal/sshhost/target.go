package sshhost

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"maps"
	"slices"
	"strings"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/dotenv"
)

// Target publishes to a .env file on a remote host with the guarantees of
// a local one (internal/envfile): the byte-preserving editor (here, on the
// content read), an atomic write (a temporary file in the same folder,
// fsynced, renamed over the file, the folder fsynced), the file's owner,
// group and owner/group bits kept (others lose theirs), and a
// compare-and-swap on the content read: if the file changed on the host
// between the read and the write (a hand edit), the write is refused as
// drift and the file is left as the person wrote it.
type Target struct {
	name string
	host *Host
	path string // absolute, on the host
}

var _ rekey.Target = (*Target)(nil)

// NewTarget returns the target called name writing the .env at path (an
// absolute path on host).
func NewTarget(name string, host *Host, path string) *Target {
	return &Target{name: name, host: host, path: path}
}

// Name names the target in messages: "web1 (deploy@web1:/srv/app/.env)".
func (t *Target) Name() string { return t.name + " (" + t.host.Dest + ":" + t.path + ")" }

// Host is the host the target is on.
func (t *Target) Host() *Host { return t.host }

// ErrChanged is wrapped by the error of a write refused because the file
// changed on the host since rekey read it (a hand edit: drift).
var ErrChanged = errors.New("remote file changed since it was read")

// exit statuses of the remote scripts.
const (
	exitMissing = 3  // the file does not exist
	exitDrift   = 17 // the file changed since it was read
)

// readScript prints the file (after its symlinks) or exits 3.
const readScript = `f=$1
[ -f "$f" ] || { echo "no such file: $f" >&2; exit 3; }
exec cat -- "$f"`

// writeScript replaces file $1 by stdin if its SHA-256 is still $2, through
// the temporary file ".BASE.rekey-$3.tmp" beside it (after symlinks): mode kept less the
// bits of others, owner and group kept (else its group bits dropped),
// fsynced, renamed, the folder fsynced. It prints nothing but errors.
const writeScript = `set -eu
f=$(readlink -f -- "$1") || f=$1
want=$2
[ -f "$f" ] || { echo "no such file: $1" >&2; exit 3; }
cur=$(sha256sum -- "$f" | cut -d' ' -f1)
[ "$cur" = "$want" ] || { echo "the file changed since rekey read it" >&2; exit 17; }
d=$(dirname -- "$f")
t="$d/.$(basename -- "$f").rekey-$3.tmp"
umask 077
trap 'rm -f -- "$t"' EXIT HUP INT TERM
cat > "$t"
mode=$(stat -c %a -- "$f")
chmod "$mode" -- "$t"
chmod o-rwx -- "$t"
chown "$(stat -c %u:%g -- "$f")" -- "$t" 2>/dev/null || chmod g-rwx -- "$t"
sync -- "$t" 2>/dev/null || sync
[ "$(sha256sum -- "$f" | cut -d' ' -f1)" = "$want" ] || { echo "the file changed since rekey read it" >&2; exit 17; }
mv -f -- "$t" "$f"
trap - EXIT HUP INT TERM
sync -- "$d" 2>/dev/null || true`

// staleScript removes the temporary files an interrupted write left
// beside file $1 and prints their names.
const staleScript = `f=$(readlink -f -- "$1") || f=$1
d=$(dirname -- "$f"); b=$(basename -- "$f")
for x in "$d/.$b.rekey-"*.tmp; do
	[ -f "$x" ] || continue
	case "${x##*/}" in ."$b".rekey-????????????????.tmp) rm -f -- "$x" && echo "${x##*/}";; esac
done`

// load reads and parses the file; it returns the bytes read too.
func (t *Target) load(ctx context.Context) (*dotenv.File, []byte, error) {
	r, err := t.host.Run(ctx, readScript, nil, t.path)
	if err != nil {
		return nil, nil, err
	}
	switch r.Exit {
	case 0:
	case exitMissing:
		return nil, nil, rekey.Errorf(rekey.CodeNotFound, "%s does not exist", t.Name()).WithHint("create it on the host, or fix the path of target %s in rekey.yaml", t.name)
	default:
		return nil, nil, t.host.Fail("read "+t.path, r)
	}
	f, err := dotenv.Parse(t.host.Name+":"+t.path, r.Stdout)
	if err != nil {
		var pe *dotenv.ParseError
		if errors.As(err, &pe) {
			return nil, nil, &rekey.Error{Code: rekey.CodeInvalid, Msg: pe.Error(), Hint: pe.Hint}
		}
		return nil, nil, rekey.Wrap(rekey.CodeInvalid, err, "")
	}
	return f, r.Stdout, nil
}

// Load reads and parses the file, for a command that only reads it.
func (t *Target) Load(ctx context.Context) (*dotenv.File, error) {
	f, _, err := t.load(ctx)
	return f, err
}

// Read returns the values the file holds for keys.
func (t *Target) Read(ctx context.Context, keys []string) (map[string]rekey.Value, error) {
	f, raw, err := t.load(ctx)
	if err != nil {
		return nil, err
	}
	defer clear(raw)
	out := map[string]rekey.Value{}
	for _, k := range keys {
		if v, ok := f.Get(k); ok {
			out[k] = rekey.NewValueString(v)
		}
	}
	return out, nil
}

// Write sets each key of set and removes each key of del, every other byte
// kept, with a compare-and-swap on the content read (drift: refused).
func (t *Target) Write(ctx context.Context, set map[string]rekey.Value, del []string) error {
	return t.write(ctx, set, del, nil)
}

// write is Write; between, when not nil, runs after the read (a test
// edits the file there).
func (t *Target) write(ctx context.Context, set map[string]rekey.Value, del []string, between func()) error {
	f, orig, err := t.load(ctx)
	if err != nil {
		return err
	}
	defer clear(orig)
	if between != nil {
		between()
	}
	for _, k := range slices.Sorted(maps.Keys(set)) {
		if cur, ok := f.Get(k); ok && cur == set[k].RevealString() {
			continue
		}
		if err := f.Set(k, set[k].RevealString()); err != nil {
			return rekey.Wrap(rekey.CodeInvalid, err, "write %s to %s", k, t.Name())
		}
	}
	for _, k := range del {
		f.Delete(k)
	}
	out := f.Bytes()
	defer clear(out)
	if string(out) == string(orig) {
		return nil
	}
	sum := sha256.Sum256(orig)
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return err
	}
	tmp := hex.EncodeToString(rnd[:])
	r, err := t.host.Run(ctx, writeScript, out, t.path, hex.EncodeToString(sum[:]), tmp)
	if err != nil {
		return err
	}
	switch r.Exit {
	case 0:
		return nil
	case exitDrift:
		return rekey.Wrap(rekey.CodeConflict, ErrChanged, "%s changed on the host while rekey was writing it: not overwritten", t.Name()).
			WithHint("someone edited it by hand; look at the change, then run the command again (it reads the file anew)")
	case exitMissing:
		return rekey.Errorf(rekey.CodeNotFound, "%s disappeared while rekey was writing it", t.Name())
	}
	return t.host.Fail("write "+t.path, r).(*rekey.Error).WithHint("nothing was half-written: %s is as it was; fix the cause and run `rekey recover`", t.Name())
}

// RemoveStaleTemps deletes the temporary files an interrupted write left
// beside the file (they may hold a new value) and returns their names.
func (t *Target) RemoveStaleTemps(ctx context.Context) ([]string, error) {
	r, err := t.host.Run(ctx, staleScript, nil, t.path)
	if err != nil {
		return nil, err
	}
	if r.Exit != 0 {
		return nil, t.host.Fail("remove stale temporary files", r)
	}
	return strings.Fields(string(r.Stdout)), nil
}
