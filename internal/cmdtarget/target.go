// Package cmdtarget is the command Target: a secret manager (Vault, AWS
// Secrets Manager, a Kubernetes Secret...) updated through its own CLI.
// rekey runs the target's read command, which prints the document it holds
// (a JSON object of strings, or KEY=value lines), changes the keys it
// manages in it, and gives the whole document to the write command on its
// standard input. No value is ever in a command line or the commands'
// environment; the documents stay in memory and are cleared after.
package cmdtarget

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/dotenv"
)

// The document formats.
const (
	FormatJSON = "json" // {"KEY": "value", ...}
	FormatEnv  = "env"  // KEY=value lines (the .env syntax)
)

// DefaultTimeout bounds each command.
const DefaultTimeout = 60 * time.Second

// maxDocument bounds what a read command may print.
const maxDocument = 4 << 20

// Target is one command target.
type Target struct {
	name        string
	read, write []string
	format      string
	dir         string
	env         []string
	timeout     time.Duration
}

var _ rekey.Target = (*Target)(nil)

// New returns the target called name: read and write are argv (no shell),
// format FormatJSON or FormatEnv, run in dir with env (less rekey's key
// material).
func New(name string, read, write []string, format, dir string, env []string) *Target {
	if format == "" {
		format = FormatJSON
	}
	return &Target{name: name, read: read, write: write, format: format, dir: dir, env: env, timeout: DefaultTimeout}
}

// Name names the target in messages: "vault (command)".
func (t *Target) Name() string { return t.name + " (command)" }

// Read returns the values the document holds for keys.
func (t *Target) Read(ctx context.Context, keys []string) (map[string]rekey.Value, error) {
	doc, err := t.load(ctx)
	if err != nil {
		return nil, err
	}
	defer wipe(doc)
	out := map[string]rekey.Value{}
	for _, k := range keys {
		if v, ok := doc[k]; ok {
			out[k] = rekey.NewValueString(v)
		}
	}
	return out, nil
}

// Write sets each key of set and removes each key of del in the document,
// every other key kept, and gives the document to the write command.
func (t *Target) Write(ctx context.Context, set map[string]rekey.Value, del []string) error {
	doc, err := t.load(ctx)
	if err != nil {
		return err
	}
	defer wipe(doc)
	changed := false
	for k, v := range set {
		if cur, ok := doc[k]; !ok || cur != v.RevealString() {
			doc[k], changed = v.RevealString(), true
		}
	}
	for _, k := range del {
		if _, ok := doc[k]; ok {
			delete(doc, k)
			changed = true
		}
	}
	if !changed {
		return nil
	}
	body, err := t.encode(doc)
	if err != nil {
		return err
	}
	defer clear(body)
	secrets := slices.Collect(maps.Values(doc))
	if _, err := t.run(ctx, "write", t.write, body, secrets); err != nil {
		return err
	}
	return nil
}

// load runs the read command and parses what it prints.
func (t *Target) load(ctx context.Context) (map[string]string, error) {
	out, err := t.run(ctx, "read", t.read, nil, nil)
	if err != nil {
		return nil, err
	}
	defer clear(out)
	doc := map[string]string{}
	switch t.format {
	case FormatEnv:
		f, err := dotenv.Parse(t.Name(), out)
		if err != nil {
			return nil, rekey.Errorf(rekey.CodeInvalid, "target %s: its read command did not print KEY=value lines", t.name).
				WithHint("check read: and format: of target %s in rekey.yaml (format: json for a JSON object)", t.name)
		}
		for _, k := range f.Keys() {
			v, _ := f.Get(k)
			doc[k] = v
		}
	default:
		trimmed := bytes.TrimSpace(out)
		if len(trimmed) == 0 || string(trimmed) == "null" {
			return doc, nil // nothing stored yet
		}
		if err := json.Unmarshal(trimmed, &doc); err != nil {
			return nil, rekey.Errorf(rekey.CodeInvalid, "target %s: its read command did not print a JSON object of strings", t.name).
				WithHint("check read: and format: of target %s in rekey.yaml (format: env for KEY=value lines)", t.name)
		}
	}
	return doc, nil
}

// encode is the document in the target's format, keys sorted.
func (t *Target) encode(doc map[string]string) ([]byte, error) {
	if t.format == FormatEnv {
		var b bytes.Buffer
		f, _ := dotenv.Parse(t.Name(), nil)
		for _, k := range slices.Sorted(maps.Keys(doc)) {
			if err := f.Set(k, doc[k]); err != nil {
				return nil, rekey.Wrap(rekey.CodeInvalid, err, "target %s: %s", t.name, k)
			}
		}
		b.Write(f.Bytes())
		return b.Bytes(), nil
	}
	return json.Marshal(doc) // sorted keys
}

// run runs argv with stdin (nil: none) and returns its stdout. Its error
// quotes the last line of stderr, with the known values (redact) and the
// stdout never shown.
func (t *Target) run(ctx context.Context, what string, argv []string, stdin []byte, redact []string) ([]byte, error) {
	if len(argv) == 0 {
		return nil, rekey.Errorf(rekey.CodeInvalid, "target %s has no %s command", t.name, what)
	}
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = t.dir
	env := t.env
	if env == nil {
		env = os.Environ()
	}
	cmd.Env = rekey.ChildEnv(env)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr capped
	stdout.max, stderr.max = maxDocument, 64<<10
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err == nil && stdout.over {
		err = errors.New("it printed more than 4 MiB")
	}
	if err != nil {
		clear(stdout.b.Bytes())
		why := err.Error()
		if stdout.over {
			why = "it printed more than 4 MiB"
		}
		if ctx.Err() != nil {
			why = "no answer within " + t.timeout.String()
		}
		line := lastLine(stderr.b.String())
		for _, v := range redact {
			if len(v) >= 4 {
				line = strings.ReplaceAll(line, v, "[REDACTED]")
			}
		}
		msg := fmt.Sprintf("target %s: the %s command (%s) failed: %s", t.name, what, argv[0], why)
		if line != "" {
			msg += ": " + line
		}
		return nil, rekey.Errorf(rekey.CodeVerifyFailed, "%s", msg).WithHint("run it by hand, logged in as rekey runs it: %s", strings.Join(argv, " "))
	}
	return stdout.b.Bytes(), nil
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}

func wipe(doc map[string]string) {
	for k := range doc {
		delete(doc, k) // strings cannot be cleared; the map lets them go
	}
}

// capped keeps the first max bytes written to it and says if there were more.
type capped struct {
	b    bytes.Buffer
	max  int
	over bool
}

func (c *capped) Write(p []byte) (int, error) {
	room := c.max - c.b.Len()
	if len(p) > room {
		c.over = true
	}
	if room > 0 {
		c.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}
