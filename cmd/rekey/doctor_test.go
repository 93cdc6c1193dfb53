package main

import (
	"database/sql"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rekeyhq/rekey/internal/doctor"
	"github.com/rekeyhq/rekey/internal/testkit"
)

// doctorCheck is a line of `rekey doctor --json`, and its statuses.
type doctorCheck = doctor.Check

const (
	checkPass = doctor.Pass
	checkWarn = doctor.Warn
	checkFail = doctor.Fail
)

// Values of the doctor fixtures (the tests grep every output for them).
const (
	docPass  = "Zm9vYmFyYmF6cXV4LV9mb29iYXJiYXpx"
	docJWT   = "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"
	docAPI   = "sk-ant-api03-abcdefghijklmnopqrstuvwxyz012345"
	docStgJW = "c3RhZ2luZ2p3dHN0YWdpbmdqd3RzdGFnaW5nand0c3RhZ2luZ2p3dHN0YWdpbmdqd3RzdGFnaW5nand0c3RhZ2luZ2p3dA=="
)

func docEnvFile(jwt, rustLog string) string {
	return "# Atlas backend\n" +
		"DATABASE_URL=postgres://postgres:" + docPass + "@localhost:5432/atlas\n" +
		"DATABASE_PASSWORD=" + docPass + "\n" +
		"JWT_SECRET=" + jwt + "\n" +
		"ANTHROPIC_API_KEY=" + docAPI + " # from the console\n" +
		"RUST_LOG=" + rustLog + "\n" +
		"PORT=8080\n"
}

var docValues = []string{docPass, docJWT, docAPI, docStgJW}

// docProject is an in-process project in a git repository of its own.
type docProject struct {
	*inProject
	home string
}

// write writes the file with exactly mode.
func (p *docProject) write(name, data string, mode os.FileMode) {
	p.t.Helper()
	p.inProject.write(name, data, mode)
	if err := os.Chmod(filepath.Join(p.dir, name), mode); err != nil {
		p.t.Fatal(err)
	}
}

func (p *docProject) git(args ...string) string {
	p.t.Helper()
	return testkit.Git(p.t, p.dir, p.home, args...)
}

func (p *docProject) rekey(args ...string) (string, string, int) {
	p.t.Helper()
	out, errs, code := p.run(args...)
	assertNoValue(p.t, "stdout of rekey "+strings.Join(args, " "), out)
	assertNoValue(p.t, "stderr of rekey "+strings.Join(args, " "), errs)
	return out, errs, code
}

// initStaging writes .env.staging and runs `rekey init` on it for the
// staging environment.
func (p *docProject) initStaging(dotenv string) {
	p.t.Helper()
	p.write(".env.staging", dotenv, 0o600)
	if _, errs, code := p.rekey("init", "--env-file", ".env.staging", "-e", "staging"); code != 0 {
		p.t.Fatalf("init staging: %s", errs)
	}
}

func assertNoValue(t *testing.T, what, text string) {
	t.Helper()
	for _, v := range docValues {
		for _, f := range forms(v) {
			if strings.Contains(text, f) {
				t.Errorf("%s contains a managed value (len %d)", what, len(v))
			}
		}
	}
}

// newDocProject makes a project that passes every check: a git repository
// ignoring the .env (0600), a clean committed .env.example, the store's
// master key in the environment.
func newDocProject(t *testing.T, git bool) *docProject {
	t.Helper()
	if git {
		testkit.RequireGit(t)
	}
	p := &docProject{inProject: &inProject{t: t, dir: t.TempDir()}, home: t.TempDir()}
	p.env = map[string]string{
		"REKEY_MASTER_KEY": testMasterKey, "REKEY_ACTOR": "doctor-test",
		"HOME": p.home, "XDG_CONFIG_HOME": filepath.Join(p.home, ".config"),
		"GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1",
	}
	p.write(".env", docEnvFile(docJWT, "info"), 0o600)
	if git {
		p.git("init", "-q")
		p.write(".gitignore", ".env\n.env.staging\n", 0o644)
	}
	if _, errs, code := p.rekey("init", "--env-file", ".env"); code != 0 {
		t.Fatalf("init: exit %d: %s", code, errs)
	}
	if _, errs, code := p.rekey("example"); code != 0 {
		t.Fatalf("example: exit %d: %s", code, errs)
	}
	if git {
		p.git("add", ".gitignore", "rekey.yaml", ".env.example")
		p.git("commit", "-q", "-m", "initial")
	}
	return p
}

// doctor runs rekey doctor --json and returns the checks by name.
func (p *docProject) doctor(wantExit int) map[string]doctorCheck {
	p.t.Helper()
	out, errs, code := p.rekey("doctor", "--json")
	if code != wantExit {
		p.t.Fatalf("doctor: exit %d, want %d\nstdout: %s\nstderr: %s", code, wantExit, out, errs)
	}
	var checks []doctorCheck
	if err := json.Unmarshal([]byte(out), &checks); err != nil {
		p.t.Fatalf("doctor --json: %v\n%s", err, out)
	}
	m := map[string]doctorCheck{}
	for _, c := range checks {
		m[c.Check] = c
	}
	if len(m) != 13 {
		p.t.Errorf("doctor printed %d checks, want 13: %s", len(m), out)
	}
	// The text form holds no value either.
	p.rekey("doctor")
	return m
}

func wantCheck(t *testing.T, checks map[string]doctorCheck, name, status string, detail ...string) {
	t.Helper()
	c, ok := checks[name]
	if !ok {
		t.Fatalf("no check %s", name)
	}
	if c.Status != status {
		t.Errorf("%s: status %s (%s), want %s", name, c.Status, c.Detail, status)
	}
	for _, d := range detail {
		if !strings.Contains(c.Detail, d) {
			t.Errorf("%s: detail %q does not contain %q", name, c.Detail, d)
		}
	}
	if status != checkPass && c.Fix == "" {
		t.Errorf("%s: %s without a fix", name, status)
	}
}

func TestDoctorAllPass(t *testing.T) {
	p := newDocProject(t, true)
	checks := p.doctor(0)
	for _, name := range []string{"env-ignored", "env-never-committed", "example", "file-modes", "env-distinct", "strength", "schedule", "log-level", "tracked-values", "audit-chain", "master-key-outside", "tls-expiry", "config-approved"} {
		wantCheck(t, checks, name, checkPass)
	}
	out, _, _ := p.rekey("doctor")
	if !strings.Contains(out, "PASS  env-ignored") || !strings.Contains(out, "13 passed, 0 warnings, 0 failed") {
		t.Errorf("text output:\n%s", out)
	}
}

func TestDoctorNotAGitRepository(t *testing.T) {
	p := newDocProject(t, false)
	p.env["GIT_CEILING_DIRECTORIES"] = p.dir // even if the temporary folder is in a repository
	checks := p.doctor(0)
	for _, name := range []string{"env-ignored", "env-never-committed", "tracked-values"} {
		wantCheck(t, checks, name, checkWarn, "not a git repository")
	}
}

func TestDoctorEnvIgnored(t *testing.T) {
	p := newDocProject(t, true)
	p.write(".gitignore", "node_modules/\n", 0o644)
	checks := p.doctor(1)
	wantCheck(t, checks, "env-ignored", checkFail, ".env")
}

func TestDoctorEnvCommitted(t *testing.T) {
	p := newDocProject(t, true)
	p.write(".gitignore", "", 0o644)
	p.git("add", "-f", ".env")
	p.git("commit", "-q", "-m", "oops")
	first := strings.TrimSpace(p.git("rev-parse", "HEAD"))
	p.git("rm", "-q", "--cached", ".env")
	p.write(".gitignore", ".env\n", 0o644)
	p.git("add", ".gitignore")
	p.git("commit", "-q", "-m", "forget .env")
	// Gone from the tree and ignored now, still in the history.
	checks := p.doctor(1)
	wantCheck(t, checks, "env-never-committed", checkFail, first, ".env")
	if !strings.Contains(checks["env-never-committed"].Fix, "rekey rotate --all --emergency") || !strings.Contains(checks["env-never-committed"].Fix, "rekey scan --history") {
		t.Errorf("fix: %s", checks["env-never-committed"].Fix)
	}
	wantCheck(t, checks, "env-ignored", checkPass)
}

func TestDoctorEnvCommittedOnAnotherBranch(t *testing.T) {
	p := newDocProject(t, true)
	p.git("checkout", "-q", "-b", "leak")
	p.git("add", "-f", ".env")
	p.git("commit", "-q", "-m", "oops")
	p.git("checkout", "-q", "main")
	checks := p.doctor(1)
	wantCheck(t, checks, "env-never-committed", checkFail, ".env is in the history since commit")
}

func TestDoctorExample(t *testing.T) {
	p := newDocProject(t, true)
	os.Remove(filepath.Join(p.dir, ".env.example"))
	checks := p.doctor(0)
	wantCheck(t, checks, "example", checkWarn, "missing: .env.example")

	// A real value, as a whole value and embedded in a URL.
	p.write(".env.example", "JWT_SECRET="+docJWT+"\nPORT=8080\n", 0o644)
	checks = p.doctor(1)
	wantCheck(t, checks, "example", checkFail, ".env.example: JWT_SECRET is JWT_SECRET v1 (production)")
	p.write(".env.example", "DATABASE_URL=postgres://u:"+docPass+"@db/x\n", 0o644)
	checks = p.doctor(1)
	wantCheck(t, checks, "example", checkFail, "holds DATABASE_PASSWORD v1 (production)")
}

func TestDoctorFileModes(t *testing.T) {
	p := newDocProject(t, true)
	os.Chmod(filepath.Join(p.dir, ".env"), 0o644)
	checks := p.doctor(1)
	wantCheck(t, checks, "file-modes", checkFail, ".env is 0644")
	if checks["file-modes"].Fix != "chmod 600 .env (or chmod 640 .env if a service reads it through its group)" {
		t.Errorf("fix: %q", checks["file-modes"].Fix)
	}
	os.Chmod(filepath.Join(p.dir, ".env"), 0o600)
	os.Chmod(filepath.Join(p.dir, ".rekey", "rekey.db"), 0o640)
	checks = p.doctor(1)
	wantCheck(t, checks, "file-modes", checkFail, filepath.Join(".rekey", "rekey.db")+" is 0640")
}

func TestDoctorEnvDistinct(t *testing.T) {
	p := newDocProject(t, true)
	p.initStaging("JWT_SECRET=" + docStgJW + "\n")
	checks := p.doctor(0)
	wantCheck(t, checks, "env-distinct", checkPass, "production, staging")

	p2 := newDocProject(t, true)
	p2.initStaging("JWT_SECRET=" + docJWT + "\n")
	checks = p2.doctor(1)
	wantCheck(t, checks, "env-distinct", checkFail, "JWT_SECRET is the same in production, staging")
}

func TestDoctorStrength(t *testing.T) {
	testkit.RequireGit(t)
	p := newDocProject(t, true)
	p.write(".env", docEnvFile("weak-jwt-secret-123", "info"), 0o600)
	if _, errs, code := p.rekey("init", "--env-file", ".env", "--force"); code != 0 {
		t.Fatalf("init: %s", errs)
	}
	checks := p.doctor(1)
	wantCheck(t, checks, "strength", checkFail, "JWT_SECRET (production)")
}

func TestDoctorSchedule(t *testing.T) {
	p := newDocProject(t, true)
	// ANTHROPIC_API_KEY is a manual key reminded every 90 days: never due-soon, overdue after 90 days.
	p.env["REKEY_TEST_NOW"] = time.Now().Add(100 * 24 * time.Hour).UTC().Format(time.RFC3339)
	checks := p.doctor(1)
	wantCheck(t, checks, "schedule", checkFail, "overdue: ANTHROPIC_API_KEY (production)")
	p.env["REKEY_TEST_NOW"] = time.Now().Add(200 * 24 * time.Hour).UTC().Format(time.RFC3339)
	checks = p.doctor(1)
	wantCheck(t, checks, "schedule", checkFail, "JWT_SECRET (production)", "DATABASE_PASSWORD (production)")

	// Without the manual key, 170 days in the 180-day secrets are due soon.
	delete(p.env, "REKEY_TEST_NOW")
	data, _ := os.ReadFile(filepath.Join(p.dir, ".env"))
	p.write(".env", strings.Replace(string(data), "ANTHROPIC_API_KEY="+docAPI+" # from the console\n", "", 1), 0o600)
	if _, errs, code := p.rekey("init", "--env-file", ".env", "--force"); code != 0 {
		t.Fatalf("init: %s", errs)
	}
	p.env["REKEY_TEST_NOW"] = time.Now().Add(170 * 24 * time.Hour).UTC().Format(time.RFC3339)
	checks = p.doctor(0)
	wantCheck(t, checks, "schedule", checkWarn, "due soon: ", "JWT_SECRET (production)")
	p.env["REKEY_TEST_NOW"] = time.Now().Add(10 * 24 * time.Hour).UTC().Format(time.RFC3339)
	checks = p.doctor(0)
	wantCheck(t, checks, "schedule", checkPass)
}

func TestDoctorLogLevel(t *testing.T) {
	for _, tc := range []struct {
		line   string
		status string
	}{
		{"RUST_LOG=info", checkPass},
		{"RUST_LOG=debug", checkFail},
		{"RUST_LOG=info,app=debug", checkFail},
		{"RUST_LOG=TRACE", checkFail},
		{"LOG_LEVEL=Debug", checkFail},
		{"APP_LOG_LEVEL=trace", checkFail},
		{"APP_LOG_LEVEL=warn", checkPass},
		{"DEBUG_MODE=debug", checkPass},
	} {
		t.Run(tc.line, func(t *testing.T) {
			p := newDocProject(t, true)
			data, _ := os.ReadFile(filepath.Join(p.dir, ".env"))
			p.write(".env", strings.Replace(string(data), "RUST_LOG=info\n", tc.line+"\n", 1), 0o600)
			want := 0
			if tc.status == checkFail {
				want = 1
			}
			checks := p.doctor(want)
			wantCheck(t, checks, "log-level", tc.status)
		})
	}
}

func TestDoctorLogLevelNonProduction(t *testing.T) {
	// Only the production environment's .env counts.
	p := newDocProject(t, true)
	p.initStaging("JWT_SECRET=" + docStgJW + "\nRUST_LOG=debug\n")
	checks := p.doctor(0)
	wantCheck(t, checks, "log-level", checkPass)
}

func TestDoctorTrackedValues(t *testing.T) {
	p := newDocProject(t, true)
	// An old version counts as much as the current one.
	if _, errs, code := p.rekey("rotate", "JWT_SECRET"); code != 0 {
		t.Fatalf("rotate: %s", errs)
	}
	p.write("src/config.js", "const secret = '"+docJWT+"';\n", 0o644)
	p.git("add", "src/config.js")
	checks := p.doctor(1)
	wantCheck(t, checks, "tracked-values", checkFail, "src/config.js: JWT_SECRET v1 (production)")

	// Percent-encoded in a URL is found too; untracked files are not searched.
	p.git("rm", "-q", "--cached", "src/config.js")
	checks = p.doctor(0)
	wantCheck(t, checks, "tracked-values", checkPass)
	p.write("docker-compose.yml", "url: postgres://postgres:"+docPass+"@db/atlas\n", 0o644)
	p.git("add", "docker-compose.yml")
	checks = p.doctor(1)
	wantCheck(t, checks, "tracked-values", checkFail, "docker-compose.yml: DATABASE_PASSWORD v1 (production)")
}

func TestDoctorAuditChain(t *testing.T) {
	p := newDocProject(t, true)
	db, err := sql.Open("sqlite", filepath.Join(p.dir, ".rekey", "rekey.db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`UPDATE audit SET actor = 'mallory' WHERE seq = 2`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	checks := p.doctor(1)
	wantCheck(t, checks, "audit-chain", checkFail, "audit chain broken at entry 2")
}

func TestDoctorMasterKeyOutside(t *testing.T) {
	testkit.RequireGit(t)
	p := &docProject{inProject: &inProject{t: t, dir: t.TempDir()}, home: t.TempDir()}
	p.env = map[string]string{"REKEY_MASTER_KEY": "", "REKEY_ACTOR": "doctor-test", "HOME": p.home, "XDG_CONFIG_HOME": filepath.Join(p.home, ".config")}
	p.write(".env", docEnvFile(docJWT, "info"), 0o600)
	p.write(".gitignore", ".env\nkeys/\n", 0o644)
	p.git("init", "-q")
	key := filepath.Join(p.home, "mk.key")
	if _, errs, code := p.rekey("init", "--env-file", ".env", "--key-file", key); code != 0 {
		t.Fatalf("init: %s", errs)
	}
	if _, errs, code := p.rekey("example"); code != 0 {
		t.Fatalf("example: %s", errs)
	}
	checks := p.doctor(0)
	wantCheck(t, checks, "master-key-outside", checkPass)
	wantCheck(t, checks, "file-modes", checkPass)

	// Moved into the project (init refuses to put it there).
	inside := filepath.Join(p.dir, "keys", "mk.key")
	os.MkdirAll(filepath.Dir(inside), 0o700)
	if err := os.Rename(key, inside); err != nil {
		t.Fatal(err)
	}
	cfg, _ := os.ReadFile(filepath.Join(p.dir, "rekey.yaml"))
	lines := strings.Split(string(cfg), "\n")
	for i, l := range lines {
		if strings.HasPrefix(strings.TrimSpace(l), "master_key:") {
			lines[i] = "  master_key: file:" + inside
		}
	}
	p.write("rekey.yaml", strings.Join(lines, "\n"), 0o644)
	if _, errs, code := p.rekey("config", "trust"); code != 0 { // the operator's own edit, approved
		t.Fatalf("config trust: exit %d\n%s", code, errs)
	}
	checks = p.doctor(1)
	wantCheck(t, checks, "master-key-outside", checkFail, "inside the project folder")

	// The key file's mode: rekey refuses to read a 0644 key file, so the
	// store is opened from REKEY_MASTER_KEY to let doctor report it.
	b, err := os.ReadFile(inside)
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(inside, 0o644)
	p.env["REKEY_MASTER_KEY"] = strings.TrimSpace(string(b))
	checks = p.doctor(1)
	wantCheck(t, checks, "file-modes", checkFail, filepath.Join("keys", "mk.key")+" is 0644")
}

func TestExample(t *testing.T) {
	p := newDocProject(t, false)
	got, err := os.ReadFile(filepath.Join(p.dir, ".env.example"))
	if err != nil {
		t.Fatal(err)
	}
	want := "# Atlas backend\n" +
		"DATABASE_URL=change-me  # derived by rekey from DATABASE_PASSWORD\n" +
		"DATABASE_PASSWORD=change-me  # PostgreSQL password: 24 bytes base64url, rotated by rekey every 180 days\n" +
		"JWT_SECRET=change-me  # generated: 64 bytes base64, rotated by rekey every 180 days\n" +
		"ANTHROPIC_API_KEY=change-me # from the console\n" +
		"RUST_LOG=info\n" +
		"PORT=8080\n"
	if string(got) != want {
		t.Errorf(".env.example:\n%s\nwant:\n%s", got, want)
	}
	assertNoValue(t, ".env.example", string(got))
	fi, _ := os.Stat(filepath.Join(p.dir, ".env.example"))
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %04o, want 0644", fi.Mode().Perm())
	}

	// Refused without --force, and the file is unchanged.
	os.WriteFile(filepath.Join(p.dir, ".env.example"), []byte("# mine\n"), 0o644)
	_, errs, code := p.rekey("example")
	if code != 4 || !strings.Contains(errs, ".env.example already exists") || !strings.Contains(errs, "--force") {
		t.Errorf("example over an existing file: exit %d, %s", code, errs)
	}
	if b, _ := os.ReadFile(filepath.Join(p.dir, ".env.example")); string(b) != "# mine\n" {
		t.Errorf("the existing file was changed: %q", b)
	}
	out, errs, code := p.rekey("example", "--force")
	if code != 0 || !strings.Contains(out, "wrote .env.example from .env: 4 placeholders, 2 values kept") {
		t.Errorf("example --force: exit %d, %s %s", code, out, errs)
	}
	if b, _ := os.ReadFile(filepath.Join(p.dir, ".env.example")); string(b) != want {
		t.Errorf("after --force: %q", b)
	}

	// --output elsewhere; never over the .env itself.
	os.Mkdir(filepath.Join(p.dir, "docs"), 0o755)
	if _, errs, code := p.rekey("example", "--output", "docs/env.sample"); code != 0 {
		t.Errorf("--output: %s", errs)
	}
	if b, _ := os.ReadFile(filepath.Join(p.dir, "docs", "env.sample")); string(b) != want {
		t.Errorf("docs/env.sample: %q", b)
	}
	if _, errs, code := p.rekey("example", "--output", ".env", "--force"); code != 5 || !strings.Contains(errs, "over the .env itself") {
		t.Errorf("--output .env: exit %d, %s", code, errs)
	}
	if b, _ := os.ReadFile(filepath.Join(p.dir, ".env")); string(b) != docEnvFile(docJWT, "info") {
		t.Errorf(".env was changed")
	}
}

func TestExampleQuotingAndUnmanaged(t *testing.T) {
	p := &docProject{inProject: &inProject{t: t, dir: t.TempDir()}, home: t.TempDir()}
	p.env = map[string]string{"REKEY_MASTER_KEY": testMasterKey, "REKEY_ACTOR": "t", "HOME": p.home}
	p.write(".env", "export JWT_SECRET='"+docJWT+"'\r\nPORT=8080\r\n", 0o600)
	if _, errs, code := p.rekey("init", "--env-file", ".env"); code != 0 {
		t.Fatalf("init: %s", errs)
	}
	// A secret added to the .env after init is not managed, but looks like one.
	data, _ := os.ReadFile(filepath.Join(p.dir, ".env"))
	p.write(".env", string(data)+"OPENAI_API_KEY=sk-proj-"+strings.Repeat("x1Y2", 10)+"\r\n", 0o600)
	if _, errs, code := p.rekey("example"); code != 0 {
		t.Fatalf("example: %s", errs)
	}
	got, _ := os.ReadFile(filepath.Join(p.dir, ".env.example"))
	want := "export JWT_SECRET='change-me'  # generated: 64 bytes base64, rotated by rekey every 180 days\r\n" +
		"PORT=8080\r\n" +
		"OPENAI_API_KEY=change-me  # looks like a secret; not managed by rekey\r\n"
	if string(got) != want {
		t.Errorf(".env.example:\n%q\nwant:\n%q", got, want)
	}
}

// TestDoctorStrengthReadsEnv: a weak value a .env holds (a hand edit the
// store does not know) fails strength with the file, line and name and the
// fix for its kind, never the value; an API key too, which the store's
// status never calls weak.
func TestDoctorStrengthReadsEnv(t *testing.T) {
	p := newDocProject(t, true)
	env := docEnvFile("hunter2hunter2", "info")
	env = strings.Replace(env, "ANTHROPIC_API_KEY="+docAPI, "ANTHROPIC_API_KEY=sk-test-123", 1)
	p.write(".env", env, 0o600)
	checks := p.doctor(1)
	wantCheck(t, checks, "strength", checkFail,
		".env:4: JWT_SECRET (production) is weak: an estimated", "below the 256 a signing secret needs",
		".env:5: ANTHROPIC_API_KEY (production) is weak: 11 characters, short for an API key")
	c := checks["strength"]
	for _, v := range []string{"hunter2", "sk-test-123"} {
		if strings.Contains(c.Detail+c.Fix, v) {
			t.Errorf("strength holds the value %q: %+v", v, c)
		}
	}
	if !strings.Contains(c.Fix, "JWT_SECRET: let rekey generate one: `rekey rotate JWT_SECRET`") || !strings.Contains(c.Fix, "ANTHROPIC_API_KEY: issue a new key at the provider, then `rekey set ANTHROPIC_API_KEY`") {
		t.Errorf("fix: %s", c.Fix)
	}
}

// TestDoctorHelpListsEveryCheck: `rekey doctor --help` lists every check
// doctor runs, in the order it runs them.
func TestDoctorHelpListsEveryCheck(t *testing.T) {
	p := newDocProject(t, true)
	out, _, _ := p.rekey("doctor", "--json")
	var checks []doctorCheck
	if err := json.Unmarshal([]byte(out), &checks); err != nil {
		t.Fatal(err)
	}
	help, _, _ := p.rekey("doctor", "--help")
	at := 0
	for _, c := range checks {
		i := strings.Index(help[at:], "\n  "+c.Check+" ")
		if i < 0 {
			t.Fatalf("doctor --help does not list %s (after the previous check):\n%s", c.Check, help)
		}
		at += i + 1
	}
}
