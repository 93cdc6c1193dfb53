package main

// Scaffolding the tests of this package share; what does not depend on
// package main is in internal/testkit. The crash tests' project (the rekey
// binary built with -tags rekeytest: ctRekeyBin, ctProject) is in
// crash_test.go.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rekeyhq/rekey/internal/pgtest"
	"github.com/rekeyhq/rekey/internal/testkit"
)

// runIn runs rekey in-process in dir and returns stdout, stderr and the exit code.
func runIn(t *testing.T, dir string, env map[string]string, stdin string, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	m := &Main{Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errb, Dir: dir, Env: env}
	code := m.Run(context.Background(), args)
	return out.String(), errb.String(), code
}

// inProject is a project rekey runs in in-process (runIn), with its own
// environment.
type inProject struct {
	t   *testing.T
	dir string
	env map[string]string
}

func (p *inProject) run(args ...string) (string, string, int) {
	p.t.Helper()
	return runIn(p.t, p.dir, p.env, "", args...)
}

// must runs rekey, fails the test unless it exits 0, and returns its stdout.
func (p *inProject) must(args ...string) string {
	p.t.Helper()
	out, errs, code := p.run(args...)
	if code != 0 {
		p.t.Fatalf("rekey %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

func (p *inProject) write(name, data string, mode os.FileMode) {
	p.t.Helper()
	testkit.WriteFile(p.t, filepath.Join(p.dir, name), data, mode)
}

func (p *inProject) read(name string) string {
	p.t.Helper()
	return testkit.ReadFile(p.t, filepath.Join(p.dir, name))
}

// init writes the .env and runs `rekey init` on it.
func (p *inProject) init(dotenv string) {
	p.t.Helper()
	p.write(".env", dotenv, 0o600)
	p.must("init", "--env-file", ".env")
}

// keyDotenv is a .env with two managed secrets (JWT_SECRET, an Anthropic
// API key) and a setting.
func keyDotenv() string {
	return "JWT_SECRET=" + ctRandB64(64, base64.StdEncoding) + "\n" +
		"ANTHROPIC_API_KEY=sk-ant-api03-" + ctRandB64(30, base64.RawURLEncoding) + "\n" +
		"PORT=8080\n"
}

// ctBareProject is a ctProject in a fresh folder whose .env is dotenv, its
// children run with a master key of their own as actor; `rekey init` is
// left to the caller.
func ctBareProject(t *testing.T, dotenv, actor string) *ctProject {
	t.Helper()
	ctRekeyBin(t)
	dir := t.TempDir()
	p := &ctProject{t: t, dir: dir, envPath: filepath.Join(dir, ".env"), orig: []byte(dotenv),
		env: ctChildEnv(t, actor)}
	testkit.WriteFile(t, p.envPath, dotenv, 0o600)
	return p
}

// ctOneCurrent fails unless rows have exactly one current version and no
// pending one, and returns the current one.
func ctOneCurrent(t *testing.T, rows []ctHistRow) int {
	t.Helper()
	cur, n := ctLabeled(rows, "current")
	if n != 1 {
		t.Fatalf("want one current version, got %d: %+v", n, rows)
	}
	if _, n := ctLabeled(rows, "pending"); n != 0 {
		t.Fatalf("a pending version survived recovery: %+v", rows)
	}
	return cur.N
}

// forms are the encodings a leaked value could take.
func forms(v string) []string {
	out := []string{v, url.QueryEscape(v), hex.EncodeToString([]byte(v)), base64.StdEncoding.EncodeToString([]byte(v))}
	if len(v) > 24 {
		out = append(out, v[:24]) // a prefix long enough to be a leak
	}
	return out
}

// startCluster starts a private cluster for one test (main_test.go's
// TestMain belongs to testscript) and stops it when the test ends.
func startCluster(t *testing.T) *pgtest.Cluster { t.Helper(); return testkit.StartCluster(t) }

// loginURL reports whether the connection URL u logs in.
func loginURL(t *testing.T, u string) bool { t.Helper(); return testkit.LogsIn(t, u) }
