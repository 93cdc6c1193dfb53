// Package approval keeps the operator's approvals of rekey.yaml.
//
// rekey acts only on a rekey.yaml approved on this machine, the way direnv
// loads only an .envrc allowed by `direnv allow`. rekey.yaml lives in the
// project folder, which others may write (a shared checkout, a deploy
// folder); what it says is run as the operator (restart commands, command
// checks, hooks, codecs) and decides where values go (http checks, derived
// URLs, database hosts and roles, targets, the master key file). So the
// commands that act on it refuse a rekey.yaml whose exact text the operator
// has not approved with `rekey config trust` (exit 5), before they read a
// key or open the store; the commands that only report keep working.
//
// The approval lives outside the project, where someone who can write the
// project cannot: $XDG_STATE_HOME/rekey/trusted (else
// ~/.local/state/rekey/trusted), one file per rekey.yaml, named by the hex
// SHA-256 of its absolute path, holding a header (rekey-trust v1, the path,
// the SHA-256 of the approved text) and the approved text (for diffs).
package approval

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/safefile"
	"github.com/rekeyhq/rekey/internal/textsafe"
)

// Hint is the hint of every refusal of an unapproved rekey.yaml.
const Hint = "review it with `rekey config diff`, then `rekey config trust`: rekey runs the commands and sends values where rekey.yaml says"

// magic is the first line of an approval file.
const magic = "rekey-trust v1"

// MaxSize bounds what is read of an approval file: a header and a
// rekey.yaml (at most 4 MiB, as config.Parse accepts).
const MaxSize = 4<<20 + 64<<10

// StateDir is rekey's folder of per-user state outside any project:
// $XDG_STATE_HOME/rekey, else ~/.local/state/rekey ("" when neither
// XDG_STATE_HOME nor HOME is an absolute path).
func StateDir(getenv func(string) string) string {
	if d := getenv("XDG_STATE_HOME"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "rekey")
	}
	if h := getenv("HOME"); h != "" && filepath.IsAbs(h) {
		return filepath.Join(h, ".local", "state", "rekey")
	}
	return ""
}

// Approval is what `rekey config trust` recorded for one rekey.yaml.
type Approval struct {
	File   string   // the approval file
	Digest [32]byte // SHA-256 of Text
	Text   []byte   // the approved rekey.yaml
}

// ErrNoStateDir is the refusal when there is no state folder to keep
// approvals in (StateDir is "").
var ErrNoStateDir = &rekey.Error{Code: rekey.CodeUnsafe,
	Msg:  "cannot tell whether rekey.yaml is approved on this machine: neither XDG_STATE_HOME nor HOME is set",
	Hint: "set HOME (or XDG_STATE_HOME) to a folder of yours, then review rekey.yaml and run `rekey config trust`"}

// File is where the approval of the rekey.yaml at cfgPath (absolute) is
// kept under the state folder stateDir.
func File(stateDir, cfgPath string) (string, error) {
	if stateDir == "" {
		return "", ErrNoStateDir
	}
	h := sha256.Sum256([]byte(cfgPath))
	return filepath.Join(stateDir, "trusted", hex.EncodeToString(h[:])), nil
}

const fileHint = "approvals are your own regular files: move this one away, then review rekey.yaml and run `rekey config trust`"

// checkDir refuses a folder of approvals that is a symbolic link, not a
// folder, or someone else's. A missing folder is fine.
func checkDir(dir string) error {
	fi, err := os.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	refuse := func(why string) error {
		return &rekey.Error{Code: rekey.CodeUnsafe, Msg: fmt.Sprintf("refusing to use %s for approvals of rekey.yaml: it %s", dir, why), Hint: "it must be a folder of yours: move it away, then review rekey.yaml and run `rekey config trust`"}
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return refuse("is a symbolic link")
	}
	if !fi.IsDir() {
		return refuse("is not a folder")
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return refuse(fmt.Sprintf("is owned by uid %d, not by you (uid %d)", st.Uid, os.Geteuid()))
	}
	return nil
}

// Read reads the approval of the rekey.yaml at cfgPath: nil when there is
// none; an error (exit 5) when it cannot be trusted (a symbolic link,
// someone else's file, a damaged file).
func Read(stateDir, cfgPath string) (*Approval, error) {
	file, err := File(stateDir, cfgPath)
	if err != nil {
		return nil, err
	}
	if err := checkDir(filepath.Dir(file)); err != nil {
		return nil, err
	}
	f, err := safefile.OpenFile(file, os.O_RDONLY, 0, fileHint)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return nil, err
	}
	ap, why := parse(data, cfgPath)
	if why != "" {
		return nil, &rekey.Error{Code: rekey.CodeUnsafe, Msg: fmt.Sprintf("the approval of %s (%s) is damaged: %s", textsafe.Quote(cfgPath), file, why), Hint: "review rekey.yaml with `rekey config diff`, then `rekey config trust` approves it anew"}
	}
	ap.File = file
	return ap, nil
}

// parse parses an approval file; why says what is wrong with it.
func parse(data []byte, cfgPath string) (ap *Approval, why string) {
	if len(data) > MaxSize {
		return nil, "too large"
	}
	rest := data
	line := func() (string, bool) {
		l, r, ok := bytes.Cut(rest, []byte("\n"))
		rest = r
		return string(l), ok
	}
	if l, ok := line(); !ok || l != magic {
		return nil, "not a rekey approval (want " + magic + ")"
	}
	l, ok := line()
	p, err := strconv.Unquote(strings.TrimPrefix(l, "path "))
	if !ok || !strings.HasPrefix(l, "path ") || err != nil {
		return nil, "no path line"
	}
	if p != cfgPath {
		return nil, "it approves another file"
	}
	l, ok = line()
	sum, err := hex.DecodeString(strings.TrimPrefix(l, "sha256 "))
	if !ok || !strings.HasPrefix(l, "sha256 ") || err != nil || len(sum) != sha256.Size {
		return nil, "no sha256 line"
	}
	if l, ok := line(); !ok || l != "" {
		return nil, "no blank line after the header"
	}
	ap = &Approval{Text: rest}
	copy(ap.Digest[:], sum)
	if sha256.Sum256(rest) != ap.Digest {
		return nil, "its copy of rekey.yaml does not match its sha256"
	}
	return ap, ""
}

// Write approves text as the rekey.yaml at cfgPath: a 0600 file in a 0700
// folder, written to a temporary file, synced and renamed over the
// previous approval (a symbolic link there is replaced, never followed).
func Write(stateDir, cfgPath string, text []byte) error {
	file, err := File(stateDir, cfgPath)
	if err != nil {
		return err
	}
	dir := filepath.Dir(file)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := checkDir(dir); err != nil {
		return err
	}
	if fi, err := os.Stat(dir); err == nil && fi.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return err
		}
	}
	sum := sha256.Sum256(text)
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s\npath %s\nsha256 %s\n\n", magic, strconv.Quote(cfgPath), hex.EncodeToString(sum[:]))
	b.Write(text)
	if err := safefile.Replace(file, ".approval-*", b.Bytes()); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// Require refuses (exit 5) the rekey.yaml at cfgPath, parsed from text,
// unless it is approved on this machine exactly as it is.
func Require(stateDir, cfgPath string, text []byte) error {
	ap, err := Read(stateDir, cfgPath)
	if err != nil {
		return err
	}
	name := textsafe.Quote(filepath.Base(cfgPath))
	if ap == nil {
		return &rekey.Error{Code: rekey.CodeUnsafe, Hint: Hint,
			Msg: fmt.Sprintf("%s is not approved on this machine yet: rekey acts only on a rekey.yaml you approved with `rekey config trust` (once, and again after every change; `rekey init` approves what it writes)", name)}
	}
	if ap.Digest == sha256.Sum256(text) {
		return nil
	}
	ch := Compare(ap.Text, text)
	return &rekey.Error{Code: rekey.CodeUnsafe, Hint: Hint,
		Msg: fmt.Sprintf("%s changed since you approved it (%s)%s", name, ch.Summary(), ch.Excerpt(6))}
}

// ShortSum is the short form of a SHA-256 that messages show (12 hex digits).
func ShortSum(s [32]byte) string { return hex.EncodeToString(s[:6]) }
