package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// jwtApp is an HTTP receiver standing for the application: GET /me answers
// 200 to a bearer token signed (HS256) with JWT_SECRET or, while the .env
// holds it, JWT_SECRET_PREVIOUS, as read from the project's .env at each
// request (a restarted app reads its .env), or with st.stale (a secret an
// instance still trusts), else 401; everything 401 while st.refuseAll.
type jwtAppState struct {
	stale     atomic.Value
	refuseAll atomic.Bool
}

func jwtApp(t *testing.T, envPath string, st *jwtAppState) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if st.refuseAll.Load() {
			w.WriteHeader(401)
			return
		}
		raw, err := os.ReadFile(envPath)
		if err != nil {
			http.Error(w, "no env", 500)
			return
		}
		keys := map[string]string{}
		sc := bufio.NewScanner(bytes.NewReader(raw))
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), "="); ok {
				keys[k] = v
			}
		}
		tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		keys["stale"], _ = st.stale.Load().(string)
		for _, k := range []string{"JWT_SECRET", "JWT_SECRET_PREVIOUS", "stale"} {
			if keys[k] == "" {
				continue
			}
			if _, err := jwt.Parse(tok, func(*jwt.Token) (any, error) { return []byte(keys[k]), nil },
				jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired()); err == nil {
				w.WriteHeader(200)
				return
			}
		}
		w.WriteHeader(401)
	}))
	t.Cleanup(srv.Close)
	return srv
}

type proofLine struct {
	Secret, Method, Verdict, Detail string
	Version, Current                int
}

// TestVerifyDeadJWT: `rekey verify --dead JWT_SECRET` presents tokens
// signed with the exposed and the current value to the app through the
// check that uses {{ JWT_SECRET | jwt }}: dead once the app accepts only
// the new secret (exit 0), alive while an instance still trusts the old one
// (exit 7), inconclusive when the app
// refuses the current value too; manual for a secret nothing presents.
// No value is printed.
func TestVerifyDeadJWT(t *testing.T) {
	p := ctInitProject(t, t.TempDir(), ".env", "prove-test", "JWT_SECRET="+ctRandB64(64, base64.StdEncoding)+"\nSESSION_SECRET="+ctRandB64(32, base64.StdEncoding)+"\nRUST_LOG=info\n")
	var st jwtAppState
	app := jwtApp(t, p.envPath, &st)
	cfg := filepath.Join(p.dir, "rekey.yaml")
	raw, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	checks := "\nchecks:\n  me:\n    http:\n      url: " + app.URL + "/me\n      headers: {Authorization: \"Bearer {{ JWT_SECRET | jwt }}\"}\n"
	if err := os.WriteFile(cfg, append(raw, checks...), 0o644); err != nil {
		t.Fatal(err)
	}
	p.must("config", "trust")
	p.must("verify", "me")
	if r := p.run("verify", "--dead", "JWT_SECRET"); r.code != 3 || !strings.Contains(r.stderr, "no version before the current one") {
		t.Fatalf("nothing rotated yet: %v", r)
	}
	prove := func(wantCode int, args ...string) []proofLine {
		t.Helper()
		r := p.run(append([]string{"verify", "--json", "--dead", "JWT_SECRET"}, args...)...)
		var ps []proofLine
		if err := json.Unmarshal([]byte(r.stdout), &ps); err != nil || r.code != wantCode {
			t.Fatalf("exit %d, want %d: %v\n%v", r.code, wantCode, err, r)
		}
		for _, s := range forms(p.get(1)) {
			if strings.Contains(r.stdout+r.stderr, s) {
				t.Fatal("a value in verify --dead's output")
			}
		}
		return ps
	}
	p.must("rotate", "JWT_SECRET")
	if ps := prove(0); len(ps) != 1 || ps[0].Method != "check me" || ps[0].Verdict != "dead" || ps[0].Version != 1 || ps[0].Current != 2 {
		t.Fatalf("after a rotation: %+v", ps)
	}
	st.stale.Store(p.get(1)) // an instance not restarted still trusts v1
	if ps := prove(7); ps[0].Verdict != "alive" || !strings.Contains(ps[0].Detail, "accepted a token signed with v1") {
		t.Fatalf("v1 still trusted: %+v", ps)
	}
	st.stale.Store("")
	p.must("rotate", "JWT_SECRET", "--emergency")
	ps := prove(0)
	if ps[0].Verdict != "dead" || ps[0].Version != 2 || ps[0].Current != 3 || !strings.Contains(ps[0].Detail, "refused a token signed with v2") {
		t.Fatalf("after an emergency rotation: %+v", ps)
	}
	// An older version, named.
	if ps = prove(0, "--version", "1"); ps[0].Verdict != "dead" || ps[0].Version != 1 {
		t.Fatalf("v1: %+v", ps)
	}
	// The app refuses everything: the control fails, nothing is proved.
	st.refuseAll.Store(true)
	if ps = prove(7); ps[0].Verdict != "inconclusive" || !strings.Contains(ps[0].Detail, "with the current v3 the check fails too") {
		t.Fatalf("app refusing all: %+v", ps)
	}
	st.refuseAll.Store(false)
	// Nothing presents SESSION_SECRET: a person has to check.
	p.must("rotate", "SESSION_SECRET")
	r := p.run("verify", "--dead", "SESSION_SECRET")
	if r.code != 0 || !strings.Contains(r.stdout, "manual") || !strings.Contains(r.stdout, "rekey has nothing to present it to") {
		t.Fatalf("SESSION_SECRET: %v", r)
	}
}

// TestVerifyDeadPostgres: a PostgreSQL password is proved dead by logging
// in with it (refused) and with the current one (accepted). Single role:
// dead after a rotation. Alternating roles: the idle role keeps the old
// password through its grace (alive: exit 7), and an emergency rotation
// disables it at once (dead, the login refused for the role).
func TestVerifyDeadPostgres(t *testing.T) {
	c := startCluster(t)
	p := pgcNewProject(t, c)
	prove := func(p *ctProject, wantCode int, args ...string) []proofLine {
		t.Helper()
		r := p.run(append([]string{"verify", "--json", "--dead", "DATABASE_PASSWORD"}, args...)...)
		var ps []proofLine
		if err := json.Unmarshal([]byte(r.stdout), &ps); err != nil || r.code != wantCode || len(ps) != 1 || ps[0].Method != "postgres login" {
			t.Fatalf("exit %d, want %d: %v %+v\n%v", r.code, wantCode, err, ps, r)
		}
		return ps
	}
	p.must("rotate", "DATABASE_PASSWORD")
	if ps := prove(p.ctProject, 0); ps[0].Verdict != "dead" || ps[0].Version != 1 || !strings.Contains(ps[0].Detail, "the server refused v1's password for role "+p.role) {
		t.Fatalf("single role: %+v", ps)
	}

	a := pgaNewProject(t, c, pgaOptions{createRole: true, initFlag: "--postgres-alternating"})
	a.must("rotate", "DATABASE_PASSWORD") // v2 on green; blue keeps v1 through its grace
	if ps := prove(a.ctProject, 7); ps[0].Verdict != "alive" || !strings.Contains(ps[0].Detail, "still accepts v1's password for role "+a.blue) {
		t.Fatalf("alternating, in grace: %+v", ps)
	}
	a.must("rotate", "DATABASE_PASSWORD", "--emergency") // v3 on blue; green's v2 disabled now
	if ps := prove(a.ctProject, 0); ps[0].Verdict != "dead" || ps[0].Version != 2 || ps[0].Current != 3 {
		t.Fatalf("alternating, after an emergency: %+v", ps)
	}
}

// TestVerifyDeadProvider: a user-managed key proved dead at its provider by
// a command check reading it on stdin (the provider here: a file of the
// keys it accepts; the check is grep -f -, so the key is in no argv). An
// incident for it leaves the rotation to a person and names the check;
// after `rekey set`, `verify --dead` finds the old key alive while the
// provider still accepts it (exit 7, recorded in the incident), then dead
// once revoked (exit 0), which completes the follow-up
// provider:STRIPE_API_KEY. No value in any output.
func TestVerifyDeadProvider(t *testing.T) {
	v1, v2 := "sk_live_"+ctRandB64(24, base64.RawURLEncoding), "sk_live_"+ctRandB64(24, base64.RawURLEncoding)
	p := ctInitProject(t, t.TempDir(), ".env", "provider-test", "STRIPE_API_KEY="+v1+"\nRUST_LOG=info\n")
	valid := filepath.Join(t.TempDir(), "provider-accepts")
	accept := func(keys ...string) {
		if err := os.WriteFile(valid, []byte(strings.Join(keys, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	accept(v1)
	cfg := filepath.Join(p.dir, "rekey.yaml")
	raw, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), "kind: manual") {
		t.Fatalf("STRIPE_API_KEY is not user-managed:\n%s", raw)
	}
	checks := "\nchecks:\n  stripe:\n    command: [grep, -qxF, -f, -, " + valid + "]\n    stdin: STRIPE_API_KEY\n    retries: 0\n"
	if err := os.WriteFile(cfg, append(raw, checks...), 0o644); err != nil {
		t.Fatal(err)
	}
	p.must("config", "trust")
	var outputs []string
	run := func(want int, stdin string, args ...string) ctResult {
		t.Helper()
		cmd, stdout, stderr := p.command(nil, args...)
		if stdin != "" {
			cmd.Stdin = strings.NewReader(stdin)
		}
		start := time.Now()
		r := p.finish(cmd, cmd.Run(), stdout, stderr, args, start)
		outputs = append(outputs, r.stdout, r.stderr)
		if r.code != want {
			t.Fatalf("want exit %d: %v", want, r)
		}
		return r
	}
	run(0, "", "verify", "stripe")

	var open incidentOpenOut
	r := run(0, "", "incident", "open", "--secret", "STRIPE_API_KEY", "--reason", "key in a screenshot", "--json")
	if err := json.Unmarshal([]byte(r.stdout), &open); err != nil {
		t.Fatal(err)
	}
	id := open.Incident.ID
	if len(open.Proofs) != 1 || open.Proofs[0].Verdict != "manual" || !strings.Contains(open.Proofs[0].Detail, "with check stripe") {
		t.Fatalf("the incident's proof of a user-managed key: %+v", open.Proofs)
	}
	followUp := func() bool {
		return followUpDone(t, run(0, "", "incident", "status", id, "--json").stdout, "provider:STRIPE_API_KEY")
	}

	// The provider issues v2; v1 is not revoked yet.
	accept(v1, v2)
	run(0, v2+"\n", "set", "STRIPE_API_KEY")
	r = run(7, "", "verify", "--dead", "STRIPE_API_KEY")
	if !strings.Contains(r.stdout, "alive") || !strings.Contains(r.stdout, "revoke v1 at the provider") || !strings.Contains(r.stderr, "incident "+id+": 1 proofs of STRIPE_API_KEY v1 recorded") {
		t.Fatalf("v1 still accepted: %v", r)
	}
	if followUp() {
		t.Fatal("follow-up done while the old key is alive")
	}
	// Revoked: dead, and the follow-up is done.
	accept(v2)
	r = run(0, "", "verify", "--dead", "STRIPE_API_KEY")
	if !strings.Contains(r.stdout, "dead") || !strings.Contains(r.stdout, "check stripe") || !strings.Contains(r.stderr, "follow-up provider:STRIPE_API_KEY done") {
		t.Fatalf("v1 revoked: %v", r)
	}
	if !followUp() {
		t.Fatal("follow-up provider:STRIPE_API_KEY not done")
	}
	if report := run(0, "", "incident", "report", id).stdout; !strings.Contains(report, "proved dead at the provider") {
		t.Errorf("the report does not show the provider proof:\n%s", report)
	}
	all := strings.Join(outputs, "\n")
	for _, v := range []string{v1, v2} {
		if strings.Contains(all, v) {
			t.Fatal("a STRIPE_API_KEY value in an output")
		}
	}
}
