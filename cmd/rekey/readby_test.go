package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/approval"
	"github.com/rekeyhq/rekey/internal/sqlite"
	"github.com/rekeyhq/rekey/seal"
)

// readByNow is the fixed clock of the --read-by tests (REKEY_TEST_NOW).
var readByNow = time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)

// newReadByProject is a project of three generated secrets and a
// user-managed key, initialised by "tester" at readByNow, whose audit log
// then gets the fixture entries (through the real sqlite store's API, with
// the project's master key: the chain stays valid).
func newReadByProject(t *testing.T, fixture []rekey.AuditEntry) *inProject {
	t.Helper()
	mk := ctRandB64(32, base64.StdEncoding)
	p := &inProject{t: t, dir: t.TempDir(), env: map[string]string{
		"REKEY_MASTER_KEY": mk,
		"XDG_CONFIG_HOME":  t.TempDir(),
		"XDG_STATE_HOME":   t.TempDir(),
		"REKEY_ACTOR":      "tester",
		"REKEY_TEST_NOW":   readByNow.Format(time.RFC3339),
	}}
	p.init("JWT_SECRET=" + ctRandB64(64, base64.StdEncoding) + "\n" +
		"SESSION_SECRET=" + ctRandB64(48, base64.StdEncoding) + "\n" +
		"COOKIE_SECRET=" + ctRandB64(48, base64.StdEncoding) + "\n" +
		"ANTHROPIC_API_KEY=sk-ant-api03-" + ctRandB64(30, base64.RawURLEncoding) + "\n" +
		"PORT=8080\n")
	key, err := seal.ParseKey(mk)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	anchors := filepath.Join(approval.StateDir(func(k string) string { return p.env[k] }), "anchors")
	st, err := sqlite.Open(ctx, filepath.Join(p.dir, ".rekey", "rekey.db"), key, sqlite.WithAnchor(anchors))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Update(ctx, func(tx rekey.Tx) error {
		for _, e := range fixture {
			if _, err := tx.Audit(e); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

// readByFixture: alice read and had injected some secrets, inside and
// outside a 90-day window; bob, "alice@host" and alice in another
// environment read others; alice's verify (values to checks) is no read.
func readByFixture() []rekey.AuditEntry {
	ago := func(days int) time.Time { return readByNow.Add(-time.Duration(days) * 24 * time.Hour) }
	return []rekey.AuditEntry{
		{Time: ago(200), Actor: "alice", Action: "get", Env: "production", Secret: "JWT_SECRET", Version: 1, Outcome: "ok"},
		{Time: ago(10), Actor: "alice", Action: "get", Env: "production", Secret: "SESSION_SECRET", Version: 1, Outcome: "ok"},
		{Time: ago(5), Actor: "alice", Action: "get", Env: "production", Secret: "SESSION_SECRET", Version: 1, Outcome: "ok"},
		{Time: ago(3), Actor: "alice", Action: "run", Env: "production", Outcome: "ok", Detail: "secrets: COOKIE_SECRET,SESSION_SECRET; command: sh"},
		{Time: ago(4), Actor: "alice", Action: "get", Env: "production", Secret: "ANTHROPIC_API_KEY", Version: 1, Outcome: "ok"},
		{Time: ago(2), Actor: "alice", Action: "verify", Env: "production", Outcome: "started", Detail: "checks: health"},
		{Time: ago(2), Actor: "alice", Action: "publish", Env: "production", Secret: "JWT_SECRET", Outcome: "ok"},
		{Time: ago(2), Actor: "bob", Action: "get", Env: "production", Secret: "JWT_SECRET", Version: 1, Outcome: "ok"},
		{Time: ago(1), Actor: "alice@host", Action: "get", Env: "production", Secret: "JWT_SECRET", Version: 1, Outcome: "ok"},
		{Time: ago(1), Actor: "alice", Action: "get", Env: "staging", Secret: "JWT_SECRET", Version: 1, Outcome: "ok"},
	}
}

// readByOut is the part of `rotate --read-by --json` these tests read.
type readByOut struct {
	Outcome string `json:"outcome"`
	Secrets []struct {
		Name      string `json:"name"`
		ToVersion int    `json:"to_version"`
	} `json:"secrets"`
	ReadBy struct {
		Actor    string `json:"actor"`
		Checked  int    `json:"audit_entries_verified"`
		Evidence []struct {
			Secret      string `json:"secret"`
			Reads       int    `json:"reads"`
			Injections  int    `json:"injections"`
			UserManaged bool   `json:"user_managed"`
		} `json:"evidence"`
	} `json:"read_by"`
}

func (p *inProject) readBy(args ...string) readByOut {
	p.t.Helper()
	out := p.must(append([]string{"rotate", "--json"}, args...)...)
	var r readByOut
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		p.t.Fatalf("%v\n%s", err, out)
	}
	return r
}

func (r readByOut) planned() []string {
	var out []string
	for _, s := range r.Secrets {
		out = append(out, s.Name)
	}
	return out
}

func (r readByOut) evidence() []string {
	var out []string
	for _, e := range r.ReadBy.Evidence {
		out = append(out, e.Secret)
	}
	return out
}

// TestRotateReadByPicksExactlyWhatTheActorRead: --read-by picks the secrets
// the actor read or had injected (not another actor's, not another
// environment's, not outside --since, not checks), and the rotation it runs
// rotates exactly those.
func TestRotateReadByPicksExactlyWhatTheActorRead(t *testing.T) {
	p := newReadByProject(t, readByFixture())

	r := p.readBy("--read-by", "alice", "--since", "90d", "--dry-run")
	if got, want := r.evidence(), []string{"SESSION_SECRET", "COOKIE_SECRET", "ANTHROPIC_API_KEY"}; !slices.Equal(got, want) {
		t.Errorf("evidence since 90d: %v, want %v", got, want)
	}
	if got, want := r.planned(), []string{"SESSION_SECRET", "COOKIE_SECRET"}; !slices.Equal(got, want) {
		t.Errorf("planned since 90d: %v, want %v (the user-managed key is left to its provider)", got, want)
	}
	for _, e := range r.ReadBy.Evidence {
		if e.Secret == "SESSION_SECRET" && (e.Reads != 2 || e.Injections != 1) {
			t.Errorf("SESSION_SECRET evidence: %+v, want 2 reads and 1 injection", e)
		}
		if e.Secret == "ANTHROPIC_API_KEY" && !e.UserManaged {
			t.Errorf("ANTHROPIC_API_KEY not marked user-managed: %+v", e)
		}
	}
	if r.Outcome != "planned" || r.ReadBy.Checked == 0 {
		t.Errorf("outcome %q, %d entries verified", r.Outcome, r.ReadBy.Checked)
	}

	// The whole log: JWT_SECRET's old read counts too; a date works as --since.
	if got, want := p.readBy("--read-by", "alice", "--dry-run").planned(), []string{"JWT_SECRET", "SESSION_SECRET", "COOKIE_SECRET"}; !slices.Equal(got, want) {
		t.Errorf("planned over the whole log: %v, want %v", got, want)
	}
	if got, want := p.readBy("--read-by", "alice", "--since", "2026-05-25", "--dry-run").planned(), []string{"SESSION_SECRET", "COOKIE_SECRET"}; !slices.Equal(got, want) {
		t.Errorf("planned since 2026-05-25: %v, want %v", got, want)
	}
	if got, want := p.readBy("--read-by", "bob", "--dry-run").planned(), []string{"JWT_SECRET"}; !slices.Equal(got, want) {
		t.Errorf("bob: %v, want %v", got, want)
	}

	// The text plan shows the evidence per secret.
	out, errs, code := p.run("rotate", "--read-by", "alice", "--since", "90d", "--dry-run")
	if code != 0 {
		t.Fatalf("dry run: exit %d\n%s", code, errs)
	}
	for _, want := range []string{
		"SESSION_SECRET: read by alice 2 times, last 2026-05-27 (get v1); injected by `rekey run` once, last 2026-05-29",
		"COOKIE_SECRET: injected by `rekey run` once, last 2026-05-29",
		"nothing changed",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run does not say %q:\n%s", want, out)
		}
	}
	if !strings.Contains(errs, "`rekey set ANTHROPIC_API_KEY`") {
		t.Errorf("no word on the user-managed key read:\n%s", errs)
	}

	// An actor who read nothing: exit 0, nothing rotated; an unknown one
	// is told the actors the log knows.
	out, errs, code = p.run("rotate", "--read-by", "carol", "--since", "90d")
	if code != 0 || !strings.Contains(out, "carol read no secret of environment production since 2026-03-03T00:00:00Z; nothing to rotate") {
		t.Errorf("carol: exit %d\n%s%s", code, out, errs)
	}
	if !strings.Contains(errs, "alice, alice@host, bob, tester") {
		t.Errorf("the known actors are not listed:\n%s", errs)
	}

	// The rotation: exactly those two, as one rotation.
	before := statusVersions(t, p)
	res := p.readBy("--read-by", "alice", "--since", "90d")
	if res.Outcome != "done" || !slices.Equal(res.planned(), []string{"SESSION_SECRET", "COOKIE_SECRET"}) {
		t.Fatalf("rotation: %+v", res)
	}
	after := statusVersions(t, p)
	for name, v := range after {
		rotated := name == "SESSION_SECRET" || name == "COOKIE_SECRET"
		if rotated != (v == before[name]+1) || !rotated && v != before[name] {
			t.Errorf("%s: v%d → v%d (rotated: %v)", name, before[name], v, rotated)
		}
	}
	audit := p.must("audit", "--json")
	if !strings.Contains(audit, `"action":"rotate.read-by"`) || !strings.Contains(audit, "offboarding alice") {
		t.Errorf("the offboarding is not audited:\n%s", audit)
	}
	if n := strings.Count(audit, `"action":"rotate.finish"`); n != 2 {
		t.Errorf("%d rotate.finish entries, want 2 (one rotation of two secrets)", n)
	}
}

// statusVersions are the current versions by name (status --json).
func statusVersions(t *testing.T, p *inProject) map[string]int {
	t.Helper()
	out, errs, code := p.run("status", "--json")
	if code != 0 && code != 8 {
		t.Fatalf("status: exit %d\n%s", code, errs)
	}
	var rows []rekey.SecretStatus
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatal(err)
	}
	m := map[string]int{}
	for _, r := range rows {
		m[r.Name] = r.Version
	}
	return m
}

// TestRotateReadByRefusesTamperedLog: someone who can write the project
// folder (not the master key) edits or removes an entry of the audit log to
// hide a read: --read-by refuses the log as evidence and rotates nothing.
func TestRotateReadByRefusesTamperedLog(t *testing.T) {
	for name, q := range map[string]string{
		"an actor renamed": `UPDATE audit SET actor = 'mallory' WHERE actor = 'alice' AND secret = 'SESSION_SECRET'`,
		"a read removed":   `DELETE FROM audit WHERE actor = 'alice' AND action = 'run'`,
	} {
		t.Run(name, func(t *testing.T) {
			p := newReadByProject(t, readByFixture())
			at := &atProject{p}
			before := p.read(".env")
			at.sql(q)
			for _, args := range [][]string{
				{"rotate", "--read-by", "alice", "--dry-run"},
				{"rotate", "--read-by", "alice"},
			} {
				out, errs, code := p.run(args...)
				if code != 6 || !strings.Contains(errs, "the audit log is no evidence: its hash chain is broken") {
					t.Errorf("rekey %s: exit %d, want 6 naming the audit log\n%s%s", strings.Join(args, " "), code, out, errs)
				}
			}
			if p.read(".env") != before {
				t.Error("the .env changed although the evidence was refused")
			}
		})
	}
}

// TestRotateReadByFlags: bad combinations and --since values are refused
// with exit 2.
func TestRotateReadByFlags(t *testing.T) {
	p := newReadByProject(t, nil)
	for _, args := range [][]string{
		{"rotate", "--read-by", "alice", "JWT_SECRET"},
		{"rotate", "--read-by", "alice", "--all"},
		{"rotate", "--since", "90d", "JWT_SECRET"},
		{"rotate", "--read-by", "alice", "--since", "yesterday"},
		{"rotate", "--read-by", ""},
	} {
		if _, errs, code := p.run(args...); code != 2 {
			t.Errorf("rekey %s: exit %d, want 2\n%s", strings.Join(args, " "), code, errs)
		}
	}
}
