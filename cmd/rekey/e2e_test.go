package main

// End to end: the runbook of the seed (secret-rotation-log.md) run with the
// real rekey binary against the reference app (examples/atlas-app, its own
// binary: e2eAppBin) and a real PostgreSQL cluster. The app is a separate
// process that rekey restarts (SIGHUP: same process, same listener) through
// rekey.yaml's services:, and that rekey's checks: exercise. Every output
// of every run (rekey's, the app's log, the server log) is searched for
// every managed value at the end.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rekeyhq/rekey/dotenv"
	"github.com/rekeyhq/rekey/examples/atlas-app/atlas"
	"github.com/rekeyhq/rekey/internal/demo"
	"github.com/rekeyhq/rekey/internal/demo/atlasdemo"
	"github.com/rekeyhq/rekey/internal/pgtest"
	"github.com/rekeyhq/rekey/internal/testkit"
)

const e2ePatients = 12

// e2eProject is the app's folder: .env, rekey.yaml, the app's pidfile and
// log, with the app running and `rekey init` done.
type e2eProject struct {
	t       *testing.T
	c       *pgtest.Cluster
	bin     string
	app     string // the reference app's binary
	dir     string
	env     []string
	db      *atlasdemo.DB
	base    string
	pidfile string
	outputs *[]string // every output, for the leak check
	values  map[string]bool
}

type e2eOptions struct {
	sessions string // immediate or graceful
}

// e2eAppBin builds the reference app once per test process, beside the
// rekey binary of ctRekeyBin (and removed with it), or in a temporary
// folder when REKEY_TEST_BIN names a binary built elsewhere.
var e2eAppBin = sync.OnceValues(func() (string, error) {
	dir := filepath.Dir(ctBinPath)
	if os.Getenv("REKEY_TEST_BIN") != "" {
		var err error
		if dir, err = os.MkdirTemp("", "rekey-e2e-app-"); err != nil {
			return "", err
		}
	}
	out := filepath.Join(dir, demo.AppName)
	return out, demo.BuildApp(context.Background(), "../..", out, nil)
})

func e2eApp(t testing.TB) string {
	t.Helper()
	ctRekeyBin(t)
	app, err := e2eAppBin()
	if err != nil {
		t.Fatal(err)
	}
	return app
}

func e2eCtx(t testing.TB) context.Context { return testkit.Ctx(t, time.Minute) }

// e2eSetup provisions a database with demo patients, writes a .env like
// the seed's, starts the app and runs `rekey init`, then completes
// rekey.yaml with services, checks, sessions and reencrypt.
func e2eSetup(t *testing.T, c *pgtest.Cluster, outputs *[]string, o e2eOptions) *e2eProject {
	t.Helper()
	name := testkit.Unique("atlas_e2e")
	key := atlasdemo.Random(32, base64.StdEncoding)
	app := e2eApp(t)
	db, err := atlasdemo.Provision(e2eCtx(t), atlasdemo.ProvisionOptions{SuperURL: c.SuperConnString("postgres"), Name: name, Patients: e2ePatients, Key: key, App: app})
	if err != nil {
		t.Fatal(err)
	}
	port, err := atlasdemo.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	p := &e2eProject{t: t, c: c, bin: ctRekeyBin(t), app: app, dir: t.TempDir(), db: db, base: "http://127.0.0.1:" + strconv.Itoa(port), pidfile: "app.pid", outputs: outputs, values: map[string]bool{}}
	p.env = testkit.CleanEnv("REKEY_MASTER_KEY="+ctRandB64(32, base64.StdEncoding), "XDG_CONFIG_HOME="+t.TempDir(), "REKEY_ACTOR=e2e",
		atlasdemo.ParentPIDEnv+"="+strconv.Itoa(os.Getpid()))
	testkit.WriteFile(t, filepath.Join(p.dir, ".env"), atlasdemo.NewEnv(db, key, port).Text(), 0o600)
	p.remember()
	listen := strings.TrimPrefix(p.base, "http://")
	p.mustBin(p.app, "start", "--env-file", ".env", "--listen", listen, "--pidfile", p.pidfile)
	t.Cleanup(func() { p.runBin(p.app, nil, "stop", "--pidfile", p.pidfile) })
	p.must("init", "--env-file", ".env")
	if err := atlasdemo.Configure(filepath.Join(p.dir, "rekey.yaml"), atlasdemo.RekeyOptions{
		App: p.app, Listen: listen, Pidfile: p.pidfile, Sessions: o.sessions, Grace: "15m",
		Patients: e2ePatients, DecryptSample: true,
	}); err != nil {
		t.Fatal(err)
	}
	p.must("config", "trust") // the operator approves the completed rekey.yaml
	p.must("verify")
	return p
}

// run runs the rekey binary in the project with extra environment.
func (p *e2eProject) run(extra []string, args ...string) testkit.Result {
	p.t.Helper()
	return p.runBin(p.bin, extra, args...)
}

// runBin runs bin (rekey, or the app) in the project with extra environment.
func (p *e2eProject) runBin(bin string, extra []string, args ...string) testkit.Result {
	p.t.Helper()
	r := testkit.Cmd{Dir: p.dir, Env: append(slices.Clip(p.env), extra...)}.Run(p.t, bin, args...)
	*p.outputs = append(*p.outputs, r.Stdout, r.Stderr)
	return r
}

func (p *e2eProject) must(args ...string) string {
	p.t.Helper()
	return p.mustBin(p.bin, args...)
}

func (p *e2eProject) mustBin(bin string, args ...string) string {
	p.t.Helper()
	r := p.runBin(bin, nil, args...)
	if r.Code != 0 {
		p.t.Fatalf("%s %s: %v", filepath.Base(bin), strings.Join(args, " "), r)
	}
	return r.Stdout
}

// dotenv reads the project's .env.
func (p *e2eProject) dotenv() map[string]string {
	p.t.Helper()
	f, err := dotenv.Parse(".env", []byte(testkit.ReadFile(p.t, filepath.Join(p.dir, ".env"))))
	if err != nil {
		p.t.Fatal(err)
	}
	out := map[string]string{}
	for _, k := range []string{"DATABASE_URL", "DATABASE_PASSWORD", "JWT_SECRET", "JWT_SECRET_PREVIOUS", "ENCRYPTION_KEY", "ENCRYPTION_KEY_PREVIOUS", "ANTHROPIC_API_KEY"} {
		if v, ok := f.Get(k); ok {
			out[k] = v
		}
	}
	return out
}

// remember adds the .env's managed values to those the leak check looks for.
func (p *e2eProject) remember() map[string]string {
	p.t.Helper()
	m := p.dotenv()
	for _, v := range m {
		p.values[v] = true
	}
	return m
}

// rememberVersions adds every stored version of every secret (also those
// published and rolled back) to the leak check's values.
func (p *e2eProject) rememberVersions() {
	p.t.Helper()
	for _, name := range []string{"DATABASE_PASSWORD", "JWT_SECRET", "ENCRYPTION_KEY", "ANTHROPIC_API_KEY"} {
		for n := 1; ; n++ {
			r := p.run(nil, "get", name, "-n", "--version", strconv.Itoa(n))
			*p.outputs = (*p.outputs)[:len(*p.outputs)-2] // rekey get prints the value by design
			if r.Code != 0 {
				break
			}
			p.values[r.Stdout] = true
		}
	}
}

// appLog is the app's log so far.
func (p *e2eProject) appLog() string {
	b, _ := os.ReadFile(filepath.Join(p.dir, p.pidfile+".log"))
	return string(b)
}

func (p *e2eProject) pid() int { return atlas.ReadPID(filepath.Join(p.dir, p.pidfile)) }

func (p *e2eProject) login() string {
	p.t.Helper()
	tok, err := atlasdemo.Login(e2eCtx(p.t), p.base)
	if err != nil {
		p.t.Fatalf("login: %v", err)
	}
	return tok
}

func (p *e2eProject) get(tok string, id int) (int, []byte) {
	p.t.Helper()
	code, body, err := atlasdemo.Get(e2eCtx(p.t), p.base, tok, id)
	if err != nil {
		p.t.Fatal(err)
	}
	return code, body
}

func (p *e2eProject) health() int {
	p.t.Helper()
	resp, err := http.Get(p.base + "/health")
	if err != nil {
		p.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// allPatients reads every patient with tok and compares it with what was seeded.
func (p *e2eProject) allPatients(tok string) {
	p.t.Helper()
	for id := 1; id <= e2ePatients; id++ {
		code, body := p.get(tok, id)
		if code != http.StatusOK {
			p.t.Fatalf("GET /patients/%d: %d %s", id, code, body)
		}
		var got atlas.Patient
		if err := json.Unmarshal(body, &got); err != nil {
			p.t.Fatal(err)
		}
		g, _ := json.Marshal(got)
		w, _ := json.Marshal(atlas.DemoPatient(int64(id)))
		if !bytes.Equal(g, w) {
			p.t.Fatalf("patient %d = %s, want %s", id, g, w)
		}
	}
}

// stored returns the ciphertexts of the PII columns.
func (p *e2eProject) stored() []string {
	p.t.Helper()
	conn, err := p.c.Connect(e2eCtx(p.t), p.db.Name)
	if err != nil {
		p.t.Fatal(err)
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(e2eCtx(p.t), "SELECT email FROM patients UNION ALL SELECT ssn FROM patients")
	if err != nil {
		p.t.Fatal(err)
	}
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			p.t.Fatal(err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		p.t.Fatal(err)
	}
	return out
}

// openUnder counts the stored values that open under key (base64).
func (p *e2eProject) openUnder(key string) int {
	p.t.Helper()
	k, err := base64.StdEncoding.DecodeString(key)
	if err != nil {
		p.t.Fatal(err)
	}
	n := 0
	for _, ct := range p.stored() {
		if _, _, err := atlas.Decrypt([][]byte{k}, ct); err == nil {
			n++
		}
	}
	return n
}

// logsIn reports whether the role logs in with password.
func (p *e2eProject) logsIn(role, password string) bool {
	p.t.Helper()
	return testkit.LogsIn(p.t, p.db.URLFor(role, password))
}

// breakJWTGenerator makes rekey generate a JWT_SECRET the app refuses
// (54 characters: HS512 wants at least 64 bytes), as a mistaken edit of
// rekey.yaml would: the app cannot start with the new values.
func (p *e2eProject) breakJWTGenerator(broken bool) {
	p.t.Helper()
	path := filepath.Join(p.dir, "rekey.yaml")
	good, bad := "generator: {bytes: 64, encoding: base64}", "generator: {bytes: 40, encoding: base64url-nopad}"
	from, to := good, bad
	if !broken {
		from, to = bad, good
	}
	if strings.Count(testkit.ReadFile(p.t, path), from) != 1 {
		p.t.Fatalf("rekey.yaml has no single %q", from)
	}
	testkit.EditFile(p.t, path, from, to)
	p.must("config", "trust") // the operator's own edit, approved
}

// noLeaks looks for every managed value in every output and log.
func noLeaks(t *testing.T, c *pgtest.Cluster, projects []*e2eProject, outputs []string) {
	t.Helper()
	all := strings.Join(outputs, "\n")
	for _, p := range projects {
		all += "\n" + p.appLog()
	}
	if c != nil {
		if b, err := c.ServerLog(); err == nil {
			all += "\n" + string(b)
		}
	}
	n := 0
	for _, p := range projects {
		for v := range p.values {
			if v == "" {
				continue
			}
			n++
			fs := []string{v}
			if !strings.HasPrefix(v, "postgres://") {
				fs = forms(v)
			}
			for _, f := range fs {
				if strings.Contains(all, f) {
					t.Errorf("a managed value (%d bytes) appears in an output or log", len(v))
				}
			}
		}
	}
	t.Logf("leak check: %d managed values, %d outputs, %d bytes searched", n, len(outputs), len(all))
}

// TestE2ERunbook is the seed's runbook with rekey: init from the app's .env,
// rotate --all (JWT_SECRET, DATABASE_PASSWORD, ENCRYPTION_KEY with online
// re-encryption of the PII), rekey restarts the app, the checks pass; then
// what the runbook's step 6 tests by hand: login works with tokens signed
// with the new secret, tokens from before are refused (immediate) or
// accepted until the grace ends (graceful), every patient reads back
// identical, the database accepts the new password only, and the report
// has the new dates.
func TestE2ERunbook(t *testing.T) {
	c := startCluster(t)
	var outputs []string
	var projects []*e2eProject
	today := time.Now().UTC().Format("2006-01-02")

	for _, mode := range []string{"immediate", "graceful"} {
		t.Run(mode, func(t *testing.T) {
			p := e2eSetup(t, c, &outputs, e2eOptions{sessions: mode})
			projects = append(projects, p)
			before := p.dotenv()
			pid := p.pid()
			oldTok := p.login()
			p.allPatients(oldTok)
			if n := p.openUnder(before["ENCRYPTION_KEY"]); n != 2*e2ePatients {
				t.Fatalf("%d PII values open under the seeding key, want %d", n, 2*e2ePatients)
			}

			r := p.run(nil, "rotate", "--all")
			if r.Code != 0 {
				t.Fatalf("rotate --all: %v", r)
			}
			after := p.remember()
			for _, k := range []string{"DATABASE_PASSWORD", "DATABASE_URL", "JWT_SECRET", "ENCRYPTION_KEY"} {
				if after[k] == "" || after[k] == before[k] {
					t.Errorf("%s was not rotated in the .env", k)
				}
			}
			if after["ANTHROPIC_API_KEY"] != before["ANTHROPIC_API_KEY"] {
				t.Error("the user-managed ANTHROPIC_API_KEY changed")
			}
			if _, ok := after["ENCRYPTION_KEY_PREVIOUS"]; ok {
				t.Error("ENCRYPTION_KEY_PREVIOUS is still published after the re-encryption")
			}
			for _, want := range []string{"restart atlas-app: ok", "re-encrypt", "checks passed"} {
				if !strings.Contains(r.Stderr, want) {
					t.Errorf("rotate did not say %q:\n%s", want, r.Stderr)
				}
			}

			// rekey restarted the app: reloaded in place (same process), on the new values.
			if got := p.pid(); got != pid {
				t.Errorf("the app's pid went from %d to %d: restart must reload in place", pid, got)
			}
			st, err := atlas.ReadStatus(filepath.Join(p.dir, p.pidfile))
			if err != nil || st.Reloads < 1 || !st.OK {
				t.Errorf("the app was not reloaded: %+v %v", st, err)
			}
			newTok := p.login()
			if _, err := atlas.VerifyToken([][]byte{[]byte(after["JWT_SECRET"])}, newTok); err != nil {
				t.Error("a token issued after the rotation does not verify with the new JWT_SECRET")
			}
			if _, err := atlas.VerifyToken([][]byte{[]byte(before["JWT_SECRET"])}, newTok); err == nil {
				t.Error("a token issued after the rotation verifies with the old JWT_SECRET")
			}
			p.allPatients(newTok)
			if n := p.openUnder(after["ENCRYPTION_KEY"]); n != 2*e2ePatients {
				t.Errorf("%d of %d PII values open under the new key", n, 2*e2ePatients)
			}
			if n := p.openUnder(before["ENCRYPTION_KEY"]); n != 0 {
				t.Errorf("%d PII values still open under the old key", n)
			}
			if !p.logsIn(p.db.Role, after["DATABASE_PASSWORD"]) {
				t.Error("the database refuses the new password")
			}
			if p.logsIn(p.db.Role, before["DATABASE_PASSWORD"]) {
				t.Error("the database still accepts the old password")
			}

			code, _ := p.get(oldTok, 1)
			switch mode {
			case "immediate":
				if _, ok := after["JWT_SECRET_PREVIOUS"]; ok {
					t.Error("JWT_SECRET_PREVIOUS published in immediate mode")
				}
				if code != http.StatusUnauthorized {
					t.Errorf("a token from before the rotation: %d, want 401 (immediate)", code)
				}
			case "graceful":
				if after["JWT_SECRET_PREVIOUS"] != before["JWT_SECRET"] {
					t.Error("JWT_SECRET_PREVIOUS is not the previous JWT_SECRET")
				}
				if code != http.StatusOK {
					t.Errorf("a token from before the rotation during the grace: %d, want 200", code)
				}
				// Still within the grace: nothing ends.
				p.must("rotate", "--due")
				if code, _ := p.get(oldTok, 2); code != http.StatusOK {
					t.Errorf("a token from before the rotation, still within the grace: %d", code)
				}
				// 16 minutes later (grace: 15m) any rekey run ends the grace.
				later := "REKEY_TEST_NOW=" + time.Now().Add(16*time.Minute).UTC().Format(time.RFC3339)
				r := p.run([]string{later}, "rotate", "--due")
				if r.Code != 0 || !strings.Contains(r.Stderr, "grace period of JWT_SECRET") {
					t.Fatalf("rotate --due after the grace: %v", r)
				}
				if _, ok := p.dotenv()["JWT_SECRET_PREVIOUS"]; ok {
					t.Error("JWT_SECRET_PREVIOUS is still published after the grace")
				}
				if code, _ := p.get(oldTok, 1); code != http.StatusUnauthorized {
					t.Errorf("a token from before the rotation after the grace: %d, want 401", code)
				}
				if code, _ := p.get(newTok, 1); code != http.StatusOK {
					t.Errorf("a new token after the grace: %d, want 200", code)
				}
			}
			p.must("verify")
			report := p.must("report")
			for _, name := range []string{"JWT_SECRET", "ENCRYPTION_KEY", "DATABASE_PASSWORD"} {
				if !strings.Contains(report, "| "+name+" | "+today+" |") {
					t.Errorf("the report does not show %s rotated on %s:\n%s", name, today, report)
				}
			}
			p.rememberVersions()
		})
	}
	noLeaks(t, c, projects, outputs)
}

// TestE2EBrokenRotation: the app cannot start with the new values (a
// JWT_SECRET too short for HS512, from a mistaken generator in rekey.yaml),
// so its restart fails. A scheduled rotation (--due, later) is rolled back:
// the previous values are republished, the app is restarted on them and the
// checks pass again; it is healthy, with everything as before. The same
// failure in an emergency rotation keeps the new values (the old ones may be
// exposed) and exits 7 naming what is broken; fixing the cause heals it. A
// check that fails after the data moved to the new key rolls back too,
// without losing a row.
func TestE2EBrokenRotation(t *testing.T) {
	c := startCluster(t)
	var outputs []string
	var projects []*e2eProject

	t.Run("scheduled-rolls-back", func(t *testing.T) {
		p := e2eSetup(t, c, &outputs, e2eOptions{sessions: "graceful"})
		projects = append(projects, p)
		envBefore, _ := os.ReadFile(filepath.Join(p.dir, ".env"))
		before := p.dotenv()
		pid := p.pid()
		tok := p.login()
		p.breakJWTGenerator(true)
		later := "REKEY_TEST_NOW=" + time.Now().AddDate(0, 0, 200).UTC().Format(time.RFC3339)
		r := p.run([]string{later}, "rotate", "--due")
		p.rememberVersions()
		if r.Code != 7 {
			t.Fatalf("rotate --due with a broken app: want exit 7, got %v", r)
		}
		for _, want := range []string{"rolled back", "checks pass again on the previous values", "JWT_SECRET must be at least 64 bytes"} {
			if !strings.Contains(r.Stderr, want) {
				t.Errorf("rotate --due did not say %q:\n%s", want, r.Stderr)
			}
		}
		envAfter, _ := os.ReadFile(filepath.Join(p.dir, ".env"))
		if !bytes.Equal(envBefore, envAfter) {
			t.Error("the .env is not back to its previous bytes")
		}
		if p.pid() != pid || p.health() != http.StatusOK {
			t.Fatalf("the app is not healthy on the previous values (pid %d→%d, /health %d)", pid, p.pid(), p.health())
		}
		p.mustBin(p.app, "status", "--pidfile", p.pidfile)
		p.allPatients(tok)
		p.allPatients(p.login())
		if n := p.openUnder(before["ENCRYPTION_KEY"]); n != 2*e2ePatients {
			t.Errorf("%d of %d PII values open under the previous key", n, 2*e2ePatients)
		}
		if !p.logsIn(p.db.Role, before["DATABASE_PASSWORD"]) {
			t.Error("the database refuses the previous password after the rollback")
		}
		if pending := p.run(nil, "get", "DATABASE_PASSWORD", "-n", "--version", "2"); pending.Code == 0 && p.logsIn(p.db.Role, pending.Stdout) {
			t.Error("the database accepts the rolled-back password")
		}
		*p.outputs = (*p.outputs)[:len(*p.outputs)-2]
		if st := p.must("status"); !strings.Contains(st, "v1") {
			t.Errorf("status after the rollback:\n%s", st)
		}
		p.must("verify")

		// Fixed: the next run rotates.
		p.breakJWTGenerator(false)
		if r := p.run([]string{later}, "rotate", "--due"); r.Code != 0 {
			t.Fatalf("rotate --due once fixed: %v", r)
		}
		p.remember()
		p.allPatients(p.login())
		p.rememberVersions()
	})

	// The emergency path's server side (ALTER ROLE kept, not rolled back)
	// is the same statements as the scheduled one above: a repeat on another
	// major (testkit.Repeating) leaves it to the first major.
	emergency := func(t *testing.T) {
		p := e2eSetup(t, c, &outputs, e2eOptions{sessions: "immediate"})
		projects = append(projects, p)
		before := p.dotenv()
		p.breakJWTGenerator(true)
		r := p.run(nil, "rotate", "--all", "--emergency")
		p.remember()
		p.rememberVersions()
		if r.Code != 7 {
			t.Fatalf("rotate --all --emergency with a broken app: want exit 7, got %v", r)
		}
		for _, want := range []string{"EMERGENCY: keeping the new values", "restart of service atlas-app failed"} {
			if !strings.Contains(r.Stderr, want) {
				t.Errorf("the emergency rotation did not say %q:\n%s", want, r.Stderr)
			}
		}
		after := p.dotenv()
		for _, k := range []string{"JWT_SECRET", "DATABASE_PASSWORD", "ENCRYPTION_KEY"} {
			if after[k] == before[k] {
				t.Errorf("the emergency rotation went back to the old %s", k)
			}
		}
		if p.logsIn(p.db.Role, before["DATABASE_PASSWORD"]) {
			t.Error("the exposed database password still logs in")
		}
		if code := p.health(); code != http.StatusServiceUnavailable {
			t.Errorf("/health of the app that cannot use the new values: %d, want 503", code)
		}
		if r := p.runBin(p.app, nil, "status", "--pidfile", p.pidfile); r.Code == 0 {
			t.Error("atlas-app status says the broken app is fine")
		}

		// The cause fixed, a new emergency rotation of JWT_SECRET heals the
		// app, and no patient is lost on the way (the interrupted rotation
		// left the rows on the old ENCRYPTION_KEY, still published as
		// ENCRYPTION_KEY_PREVIOUS).
		t.Run("fixed-no-row-lost", func(t *testing.T) {
			p.t = t
			p.emergencyFix()
		})
	}
	if !testkit.Repeating() {
		t.Run("emergency-keeps-new-values", emergency)
	}

	t.Run("failed-check-after-reencryption-rolls-back", func(t *testing.T) {
		p := e2eSetup(t, c, &outputs, e2eOptions{sessions: "immediate"})
		projects = append(projects, p)
		before := p.dotenv()
		// A smoke test that fails once (say, a dependency blipped), with no retry.
		path := filepath.Join(p.dir, "rekey.yaml")
		b, _ := os.ReadFile(path)
		b = append(b, []byte("  flaky:\n    command: [sh, -c, 'if [ -e fail-once ]; then rm fail-once; exit 1; fi']\n    retries: 0\n")...)
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		p.must("config", "trust")
		if err := os.WriteFile(filepath.Join(p.dir, "fail-once"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		r := p.run(nil, "rotate", "--all")
		p.remember()
		p.rememberVersions()
		if r.Code != 7 {
			t.Fatalf("rotate --all with a failing check: want exit 7, got %v", r)
		}
		t.Logf("rotate --all with a check failing once: %v", r)
		if p.health() != http.StatusOK {
			t.Fatalf("/health after the rollback: %d", p.health())
		}
		after := p.dotenv()
		if after["JWT_SECRET"] != before["JWT_SECRET"] || after["DATABASE_PASSWORD"] != before["DATABASE_PASSWORD"] {
			t.Error("JWT_SECRET and DATABASE_PASSWORD were not rolled back")
		}
		// The rows had moved to the new key before the check ran: whatever
		// rekey does with the data key, every patient must still read.
		p.allPatients(p.login())
		p.must("verify")
		t.Logf("after the rollback: ENCRYPTION_KEY %s, ENCRYPTION_KEY_PREVIOUS published: %v",
			map[bool]string{true: "kept the new value", false: "back to the old value"}[after["ENCRYPTION_KEY"] != before["ENCRYPTION_KEY"]],
			after["ENCRYPTION_KEY_PREVIOUS"] != "")
	})
	noLeaks(t, c, projects, outputs)
}

// emergencyFix is the end of the emergency: the cause fixed, JWT_SECRET
// rotated again in an emergency, then ENCRYPTION_KEY; every patient reads.
func (p *e2eProject) emergencyFix() {
	t := p.t
	t.Helper()
	defer p.rememberVersions() // for the leak check, also after a failure
	p.breakJWTGenerator(false)
	// The interrupted rotation marked ENCRYPTION_KEY: its rows still need the
	// previous key, so status needs attention and another rotation of the key
	// is refused until `rekey reencrypt` has moved them.
	if r := p.run(nil, "status"); r.Code != 8 || !strings.Contains(r.Stdout, "reencrypt-incomplete") {
		t.Errorf("status after the interrupted emergency: %v", r)
	}
	if r := p.run(nil, "rotate", "ENCRYPTION_KEY"); r.Code != 4 {
		t.Errorf("rotate ENCRYPTION_KEY before its rows moved: want exit 4, got %v", r)
	}
	// reencrypt moves the rows; restarting the still-broken app fails (exit
	// 7), but the data is on the current key from here on.
	if r := p.run(nil, "reencrypt"); r.Code != 0 && r.Code != 7 {
		t.Fatalf("reencrypt: %v", r)
	}
	if r := p.run(nil, "status"); strings.Contains(r.Stdout, "reencrypt-incomplete") {
		t.Errorf("status after reencrypt: %v", r)
	}
	if r := p.run(nil, "rotate", "JWT_SECRET", "--emergency"); r.Code != 0 {
		t.Fatalf("rotate JWT_SECRET --emergency once fixed: %v", r)
	}
	p.remember()
	if code := p.health(); code != http.StatusOK {
		t.Fatalf("/health after the fix: %d", code)
	}
	p.allPatients(p.login())
	if r := p.run(nil, "rotate", "ENCRYPTION_KEY"); r.Code != 0 {
		t.Errorf("rotate ENCRYPTION_KEY after the emergency: %v", r)
	}
	p.remember()
	p.allPatients(p.login())
}
