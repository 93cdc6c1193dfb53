package main

import (
	"bytes"
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/dotenv"
	"github.com/spf13/cobra"
)

//go:embed demo/secret-rotation-log.md
var demoLog []byte

func (a *app) demoCommand() *cobra.Command {
	var dir string
	var withPostgres, keep bool
	c := &cobra.Command{
		Use:   "demo [--dir DIR] [--with-postgres [--keep]]",
		Short: "A 1-minute tour in a temporary folder: init, status, rotate, report (no server needed)",
		Long: `demo writes a .env shaped like the Atlas PharmaTech backend's (fake values)
and the team's rotation log into a new folder, then runs, narrating each step:
rekey init --import-log, rekey status, rekey rotate --all, rekey status,
rekey history JWT_SECRET, rekey report and rekey audit verify. The folder is
kept so you can try more commands in it; its master key file lives in the
folder's config/ subfolder, outside the project.

--with-postgres runs the whole runbook against a real application instead:
it starts a throwaway PostgreSQL cluster (its server binaries must be
installed) and the reference backend (examples/atlas-app, built into
rekey), seeds encrypted patients, and narrates init, status, verify, rotate
--all (graceful JWT sessions, alternating database roles, online
re-encryption of the PII, restart of the app, checks), the end of the grace
period, report and audit verify. Everything is stopped and removed at the
end, or on Ctrl-C; --keep leaves PostgreSQL and the app running until
Ctrl-C so you can try more commands.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if withPostgres {
				return a.runDemoPostgres(cmd.Context(), dir, keep)
			}
			if keep {
				return rekey.Errorf(rekey.CodeInvalid, "--keep goes with --with-postgres")
			}
			return a.runDemo(cmd.Context(), dir)
		},
	}
	c.Flags().StringVar(&dir, "dir", "", "folder to create the demo in (default: a new temporary folder)")
	c.Flags().BoolVar(&withPostgres, "with-postgres", false, "run the runbook against a throwaway PostgreSQL and the reference app")
	c.Flags().BoolVar(&keep, "keep", false, "with --with-postgres: keep PostgreSQL and the app running until Ctrl-C")
	return c
}

func randB64(n int, enc *base64.Encoding) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return enc.EncodeToString(b)
}

func (a *app) runDemo(ctx context.Context, dir string) error {
	var err error
	if dir == "" {
		dir, err = os.MkdirTemp("", "rekey-demo-")
		if err != nil {
			return err
		}
	} else if dir, err = a.abs(dir); err != nil {
		return err
	}
	proj := filepath.Join(dir, "atlas-backend")
	if err := os.MkdirAll(proj, 0o755); err != nil {
		return err
	}
	if fileExists(filepath.Join(proj, "rekey.yaml")) {
		return rekey.Errorf(rekey.CodeConflict, "%s already holds a demo", proj).WithHint("pass another --dir, or remove it")
	}
	pw := randB64(24, base64.URLEncoding)
	env := "# Atlas PharmaTech backend (demo values, not real secrets)\n" +
		"DATABASE_URL=postgres://postgres:" + pw + "@localhost:5432/atlas\n" +
		"DATABASE_PASSWORD=" + pw + "\n" +
		"\n# Auth\n" +
		"JWT_SECRET=" + randB64(64, base64.StdEncoding) + "\n" +
		"ENCRYPTION_KEY=" + randB64(32, base64.StdEncoding) + "\n" +
		"ANTHROPIC_API_KEY=sk-ant-demo-" + randB64(24, base64.RawURLEncoding) + "\n" +
		"\nRUST_LOG=info\nPORT=8080\nHOST=0.0.0.0\n"
	if err := dotenv.WriteFileAtomic(filepath.Join(proj, ".env"), []byte(env), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(proj, "secret-rotation-log.md"), demoLog, 0o644); err != nil {
		return err
	}
	sub := &Main{Stdin: bytes.NewReader(nil), Stdout: a.m.Stdout, Stderr: a.m.Stderr, Dir: proj, Env: map[string]string{
		"XDG_CONFIG_HOME":  filepath.Join(dir, "config"),
		"XDG_STATE_HOME":   filepath.Join(dir, "state"),
		"REKEY_MASTER_KEY": "",
	}}
	for k, v := range a.m.Env {
		if _, ok := sub.Env[k]; !ok {
			sub.Env[k] = v
		}
	}
	w := a.out()
	fmt.Fprintf(w, "rekey demo in %s\n", proj)
	fmt.Fprintf(w, "A .env shaped like the runbook's backend (fake values) and the team's rotation log are there.\n")
	steps := []struct {
		say  string
		args []string
		ok   map[int]bool
	}{
		{"1. Inventory the .env: classify every key, seal current values as v1, take last-rotation dates from the log", []string{"init", "--env-file", ".env", "--import-log", "secret-rotation-log.md"}, nil},
		{"2. What is due? (the log's dates are a year old: everything is overdue, so status exits 8)", []string{"status"}, map[int]bool{8: true}},
		{"3. Rotate everything rekey can rotate here (runbook steps 1, 2 and 5); a plan first", []string{"rotate", "--all", "--dry-run"}, nil},
		{"", []string{"rotate", "--all"}, nil},
		{"4. Status again", []string{"status"}, map[int]bool{8: true}},
		{"5. Every version is kept, sealed; only fingerprints are shown", []string{"history", "JWT_SECRET"}, nil},
		{"6. The rotation log, regenerated from the store (runbook format)", []string{"report"}, nil},
		{"7. The audit trail and its hash chain", []string{"audit", "--limit", "6"}, nil},
		{"", []string{"audit", "verify"}, nil},
	}
	for _, s := range steps {
		if s.say != "" {
			fmt.Fprintf(w, "\n== %s\n", s.say)
		}
		fmt.Fprintf(w, "$ rekey %s\n", strings.Join(s.args, " "))
		if code := sub.Run(ctx, s.args); code != 0 && !s.ok[code] {
			return rekey.Errorf(rekey.CodeInternal, "demo step `rekey %s` exited %d", strings.Join(s.args, " "), code)
		}
	}
	fmt.Fprintf(w, `
== Try next (in %s):
  export XDG_CONFIG_HOME=%s   # where the demo's master key file is
  export XDG_STATE_HOME=%s    # where its rekey.yaml approval and audit anchor are
  rekey rotate JWT_SECRET --dry-run
  rekey rollback JWT_SECRET
  rekey get JWT_SECRET          # prints the value; the read is audited
  rekey run -- env              # a command with the secrets in its environment
  rekey recover                 # what every command runs first after a crash
DATABASE_PASSWORD and ENCRYPTION_KEY were skipped: rotating them safely needs
a reachable PostgreSQL (rekey sets the new password with a SCRAM verifier,
never plaintext) and the database whose PII rows ENCRYPTION_KEY protects
(rekey re-encrypts them). `+"`rekey demo --with-postgres`"+` does all of it against a
real app.
`, proj, filepath.Join(dir, "config"), filepath.Join(dir, "state"))
	return nil
}
