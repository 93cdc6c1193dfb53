// Package demo is `rekey demo`: the tour in a temporary folder (Tour) and
// the whole runbook against the reference application and a throwaway
// PostgreSQL (Postgres). It drives rekey the way a user would, one command
// line at a time, through Options.Rekey (the CLI run in-process), and the
// reference app (examples/atlas-app) as a separate binary (app.go): the
// rekey binary does not link the app.
package demo

import (
	"context"
	_ "embed"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/dotenv"
	"github.com/rekeyhq/rekey/internal/demo/atlasdemo"
)

//go:embed secret-rotation-log.md
var rotationLog []byte

// ErrInterrupted is returned when ctx ended the demo (Ctrl-C), after the
// clean-up.
var ErrInterrupted = errors.New("demo: interrupted")

// Options is what the CLI hands the demo.
type Options struct {
	// Dir is the folder to create the demo in, absolute ("" = a new
	// temporary folder).
	Dir string
	// App is the reference app's binary for Postgres ("" = FindApp).
	App string
	// Keep leaves PostgreSQL and the app running until ctx ends (Postgres).
	Keep bool
	// Grace is the token lifetime and the grace of the previous JWT secret
	// and database role (Postgres; 0 = DefaultGrace).
	Grace          time.Duration
	Stdout, Stderr io.Writer
	// Environ is the environment rekey runs with: the app, go build and
	// the clean-up get it (less rekey's key material).
	Environ []string
	// Rekey runs one rekey command line in dir, with env over rekey's own
	// environment (a key mapped to "" unsets it), and returns its exit
	// status.
	Rekey func(ctx context.Context, dir string, env map[string]string, args []string) int
}

// session is one demo's folder: the project in it and the environment
// every rekey command of the demo gets.
type session struct {
	o         Options
	w         io.Writer
	dir, proj string
	env       map[string]string
}

// newSession creates the demo folder (o.Dir, else a new temporary folder
// named prefix*) and its atlas-backend project.
func newSession(o Options, prefix string) (*session, error) {
	dir := o.Dir
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", prefix); err != nil {
			return nil, err
		}
	}
	s := &session{o: o, w: o.Stdout, dir: dir, proj: filepath.Join(dir, "atlas-backend")}
	if _, err := os.Stat(filepath.Join(s.proj, "rekey.yaml")); err == nil {
		return nil, rekey.Errorf(rekey.CodeConflict, "%s already holds a demo", s.proj).WithHint("pass another --dir, or remove it")
	}
	if err := os.MkdirAll(s.proj, 0o755); err != nil {
		return nil, err
	}
	s.env = map[string]string{
		"XDG_CONFIG_HOME":  s.config(),
		"XDG_STATE_HOME":   s.state(),
		"REKEY_MASTER_KEY": "",
	}
	return s, nil
}

// config is where the demo's master key file is; state where its
// rekey.yaml approval and audit anchor are.
func (s *session) config() string { return filepath.Join(s.dir, "config") }
func (s *session) state() string  { return filepath.Join(s.dir, "state") }

// writeProject writes the project's .env and the team's rotation log.
func (s *session) writeProject(env string) error {
	if err := dotenv.WriteFileAtomic(filepath.Join(s.proj, ".env"), []byte(env), 0o600); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(s.proj, "secret-rotation-log.md"), rotationLog, 0o644)
}

func (s *session) say(format string, args ...any) { fmt.Fprintf(s.w, format+"\n", args...) }

// rekey runs one narrated rekey command in the project; an exit status
// other than 0 and those in ok is an error.
func (s *session) rekey(ctx context.Context, say string, ok map[int]bool, args ...string) error {
	if say != "" {
		s.say("\n== %s", say)
	}
	s.say("$ rekey %s", strings.Join(args, " "))
	if code := s.o.Rekey(ctx, s.proj, maps.Clone(s.env), args); code != 0 && !ok[code] {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return rekey.Errorf(rekey.CodeInternal, "demo step `rekey %s` exited %d", strings.Join(args, " "), code)
	}
	return nil
}

// interrupted turns the error of a demo that ctx stopped (Ctrl-C) into
// ErrInterrupted.
func (s *session) interrupted(ctx context.Context, err error) error {
	if err != nil && ctx.Err() != nil {
		s.say("\nInterrupted: cleaning up.")
		return ErrInterrupted
	}
	return err
}

// tourSteps are the tour's narrated commands; ok are the exit statuses
// that are no failure (status exits 8 when anything is overdue).
var tourSteps = []struct {
	say  string
	ok   map[int]bool
	args []string
}{
	{"1. Inventory the .env: classify every key, seal current values as v1, take last-rotation dates from the log", nil, []string{"init", "--env-file", ".env", "--import-log", "secret-rotation-log.md"}},
	{"2. What is due? (the log's dates are a year old: everything is overdue, so status exits 8)", map[int]bool{8: true}, []string{"status"}},
	{"3. Rotate everything rekey can rotate here (runbook steps 1, 2 and 5); a plan first", nil, []string{"rotate", "--all", "--dry-run"}},
	{"", nil, []string{"rotate", "--all"}},
	{"4. Status again", map[int]bool{8: true}, []string{"status"}},
	{"5. Every version is kept, sealed; only fingerprints are shown", nil, []string{"history", "JWT_SECRET"}},
	{"6. The rotation log, regenerated from the store (runbook format)", nil, []string{"report"}},
	{"7. The audit trail and its hash chain", nil, []string{"audit", "--limit", "6"}},
	{"", nil, []string{"audit", "verify"}},
}

// Tour is `rekey demo`: a .env shaped like the runbook's backend (fake
// values) and the team's rotation log in a new folder, then init, status,
// rotate --all, history, report and audit, narrated. No server needed.
func Tour(ctx context.Context, o Options) error {
	s, err := newSession(o, "rekey-demo-")
	if err != nil {
		return err
	}
	pw := atlasdemo.Random(24, base64.URLEncoding)
	env := "# Atlas PharmaTech backend (demo values, not real secrets)\n" +
		"DATABASE_URL=postgres://postgres:" + pw + "@localhost:5432/atlas\n" +
		"DATABASE_PASSWORD=" + pw + "\n" +
		"\n# Auth\n" +
		"JWT_SECRET=" + atlasdemo.Random(64, base64.StdEncoding) + "\n" +
		"ENCRYPTION_KEY=" + atlasdemo.Random(32, base64.StdEncoding) + "\n" +
		"ANTHROPIC_API_KEY=sk-ant-demo-" + atlasdemo.Random(24, base64.RawURLEncoding) + "\n" +
		"\nRUST_LOG=info\nPORT=8080\nHOST=0.0.0.0\n"
	if err := s.writeProject(env); err != nil {
		return err
	}
	s.say("rekey demo in %s", s.proj)
	s.say("A .env shaped like the runbook's backend (fake values) and the team's rotation log are there.")
	for _, st := range tourSteps {
		if err := s.rekey(ctx, st.say, st.ok, st.args...); err != nil {
			return s.interrupted(ctx, err)
		}
	}
	fmt.Fprintf(s.w, `
== Try next:
%s  rekey rotate JWT_SECRET --dry-run
  rekey rollback JWT_SECRET
  rekey get JWT_SECRET          # prints the value; the read is audited
  rekey run -- env              # a command with the .env, its secrets from the store
  rekey recover                 # what every command runs first after a crash
DATABASE_PASSWORD and ENCRYPTION_KEY were skipped: rotating them safely needs
a reachable PostgreSQL (rekey sets the new password with a SCRAM verifier,
never plaintext) and the database whose PII rows ENCRYPTION_KEY protects
(rekey re-encrypts them). `+"`rekey demo --with-postgres`"+` does all of it against a
real app.
`, s.tryNextHeader())
	return nil
}
