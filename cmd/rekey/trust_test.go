package main

// Trust hardening (issue 10, items 3, 7 and 10), each attack performed
// against the real rekey binary: the children rekey starts (rekey run's
// command, service commands, command checks, on_rotate hooks) must not
// receive rekey's own key material; an http check must not carry its
// templated secrets to the host a redirect names; the output rekey shows of
// a failing command must not hold any stored version of any secret in any
// encoding `rekey scan` recognises.

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/rekeyhq/rekey/internal/testkit"
)

// tpProject is a project initialised by the real binary, with key material
// in rekey's environment.
type tpProject struct {
	t   *testing.T
	bin string
	dir string
	env []string
	// keyVars are the key material given to rekey (name → value).
	keyVars map[string]string
}

// tpKeyVars is the key material rekey may find in its environment.
func tpKeyVars() map[string]string {
	return map[string]string{
		"REKEY_MASTER_KEY":     ctRandB64(32, base64.StdEncoding),
		"REKEY_PASSPHRASE":     "canary passphrase " + ctRandB64(12, base64.RawURLEncoding),
		"REKEY_NEW_MASTER_KEY": ctRandB64(32, base64.StdEncoding),
		"REKEY_NEW_PASSPHRASE": "canary new passphrase " + ctRandB64(12, base64.RawURLEncoding),
		"REKEY_NEW_WHATEVER":   "canary-new-" + ctRandB64(12, base64.RawURLEncoding),
	}
}

func tpNewProject(t *testing.T) *tpProject {
	t.Helper()
	p := &tpProject{t: t, bin: ctRekeyBin(t), dir: t.TempDir(), keyVars: tpKeyVars()}
	p.env = testkit.CleanEnv("XDG_CONFIG_HOME="+t.TempDir(), "REKEY_ACTOR=trust")
	for k, v := range p.keyVars {
		p.env = append(p.env, k+"="+v)
	}
	testkit.WriteFile(t, filepath.Join(p.dir, ".env"), keyDotenv(), 0o600)
	p.must("init", "--env-file", ".env")
	return p
}

func (p *tpProject) run(args ...string) testkit.Result {
	p.t.Helper()
	return p.runInput("", args...)
}

func (p *tpProject) runInput(stdin string, args ...string) testkit.Result {
	p.t.Helper()
	return testkit.Cmd{Dir: p.dir, Env: p.env, Stdin: stdin}.Run(p.t, p.bin, args...)
}

func (p *tpProject) must(args ...string) testkit.Result {
	p.t.Helper()
	r := p.run(args...)
	if r.Code != 0 {
		p.t.Fatalf("rekey %s: %v", strings.Join(args, " "), r)
	}
	return r
}

// configure adds sections to rekey.yaml: top (services:, checks:) at its
// end, and jwt under the JWT_SECRET secret (sessions:), and approves the
// edit as the operator would (with the binary; in-process callers run
// config trust themselves).
func (p *tpProject) configure(jwt, top string) {
	p.t.Helper()
	path := filepath.Join(p.dir, "rekey.yaml")
	if jwt != "" {
		testkit.EditFile(p.t, path, "\n  JWT_SECRET:\n", "\n  JWT_SECRET:\n"+jwt)
	}
	testkit.EditFile(p.t, path, "", "\n"+top)
	if p.bin != "" {
		p.must("config", "trust")
	}
}

// versions returns every stored version of name, oldest first.
func (p *tpProject) versions(name string) []string {
	p.t.Helper()
	var out []string
	for n := 1; ; n++ {
		r := p.run("get", name, "-n", "--version", strconv.Itoa(n))
		if r.Code != 0 {
			return out
		}
		out = append(out, r.Stdout)
	}
}

// readEnvDump parses a file written by `env -0`-less `env`: one KEY=VALUE
// per line (values rekey manages hold no newline).
func readEnvDump(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("the child did not dump its environment: %v", err)
	}
	m := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			m[k] = v
		}
	}
	return m
}

// checkChildEnv fails when the dump at path holds key material, or a
// managed value other than those allowed (name → value the child may see).
func checkChildEnv(t *testing.T, what, path string, keyVars map[string]string, managed []string, allowed map[string]string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Errorf("%s: the child did not dump its environment: %v", what, err)
		return
	}
	text := string(b)
	m := readEnvDump(t, path)
	for k := range m {
		if isKeyVarName(k) {
			t.Errorf("%s: the child's environment has %s", what, k)
		}
	}
	for k, v := range keyVars {
		if strings.Contains(text, v) {
			t.Errorf("%s: the child's environment holds the value of %s", what, k)
		}
	}
	for _, v := range managed {
		if v == "" {
			continue
		}
		ok := false
		for _, a := range allowed {
			if a == v {
				ok = true
			}
		}
		if !ok && strings.Contains(text, v) {
			t.Errorf("%s: the child's environment holds a managed value (%d bytes) it is not meant to receive", what, len(v))
		}
	}
	for k, v := range allowed {
		if m[k] != v {
			t.Errorf("%s: the child did not receive %s", what, k)
		}
	}
}

// isKeyVarName: rekey's key material as the issue names it: REKEY_NEW_*,
// and REKEY_* naming a key, passphrase, password, secret or token.
var isKeyVarName = regexp.MustCompile(`^REKEY_(NEW_|.*(KEY|PASSPHRASE|PASSWORD|SECRET|TOKEN))`).MatchString

// TestTrustChildEnvNoKeyMaterial (item 3): with REKEY_MASTER_KEY,
// REKEY_PASSPHRASE and REKEY_NEW_* in rekey's environment, every child —
// rekey run's command, a service's restart and status commands, a command
// check (in a rotation and in rekey verify), an on_rotate command hook —
// dumps its environment to a file: none holds key material; only run's
// command holds managed values (the current ones, by design).
func TestTrustChildEnvNoKeyMaterial(t *testing.T) {
	p := tpNewProject(t)
	dump := func(name string) string { return `[sh, -c, "env > ` + name + `.env"]` }
	p.configure(
		"    sessions: {mode: immediate, on_rotate: [{command: "+dump("hook")+"}]}\n",
		"services:\n  api:\n    restart: "+dump("restart")+"\n    status: "+dump("status")+"\n    consumes: [JWT_SECRET]\n"+
			"checks:\n  envdump:\n    command: "+dump("check")+"\n")
	p.must("rotate", "JWT_SECRET")
	for _, f := range []string{"hook", "restart", "check"} {
		if _, err := os.Stat(filepath.Join(p.dir, f+".env")); err != nil {
			t.Fatalf("rotate JWT_SECRET did not run the %s child: %v", f, err)
		}
	}
	var managed []string
	for _, n := range []string{"JWT_SECRET", "ANTHROPIC_API_KEY"} {
		managed = append(managed, p.versions(n)...)
	}
	check := func(what, f string, allowed map[string]string) {
		t.Helper()
		checkChildEnv(t, what, filepath.Join(p.dir, f+".env"), p.keyVars, managed, allowed)
		os.Remove(filepath.Join(p.dir, f+".env"))
	}
	check("on_rotate hook", "hook", nil)
	check("service restart (rotation)", "restart", nil)
	check("command check (rotation)", "check", nil)

	p.must("verify")
	check("command check (rekey verify)", "check", nil)
	p.must("services", "status")
	check("service status", "status", nil)
	p.must("services", "restart")
	check("service restart (rekey services restart)", "restart", nil)

	p.must("run", "--", "sh", "-c", "env > run.env")
	cur := map[string]string{}
	for _, n := range []string{"JWT_SECRET", "ANTHROPIC_API_KEY"} {
		cur[n] = p.must("get", n, "-n").Stdout
	}
	check("rekey run's command", "run", cur)
}

// TestTrustHTTPCheckRedirect (item 7): an http check whose endpoint
// redirects (307, which repeats method, headers and body) to another host
// must not deliver the check's templated secret to that host; rekey
// verify fails naming the check and the target host. With
// follow_redirects: same-origin, a redirect within the origin is followed
// and one to another host still refused.
func TestTrustHTTPCheckRedirect(t *testing.T) {
	p := tpNewProject(t)
	var mu sync.Mutex
	var got []string // what the other host received
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, r.Header.Get("X-Api-Key")+" "+string(body))
		mu.Unlock()
		w.WriteHeader(200)
	}))
	defer evil.Close()
	evilHost := strings.Replace(evil.URL, "127.0.0.1", "localhost", 1) // another host, too
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/login":
			http.Redirect(w, r, evilHost+"/steal", http.StatusTemporaryRedirect)
		case "/moved":
			http.Redirect(w, r, "/login-here", http.StatusTemporaryRedirect)
		case "/login-here":
			if r.Header.Get("X-Api-Key") == "" {
				w.WriteHeader(401)
				return
			}
			w.WriteHeader(200)
		default:
			w.WriteHeader(404)
		}
	}))
	defer app.Close()
	check := func(name, path, extra string) string {
		return "  " + name + ":\n    http:\n      method: POST\n      url: " + app.URL + path + "\n" +
			"      headers: {X-Api-Key: \"{{ JWT_SECRET }}\"}\n      body: '{\"key\": \"{{ ANTHROPIC_API_KEY | json }}\"}'\n" + extra +
			"    retries: 0\n"
	}
	p.configure("", "checks:\n"+check("login", "/login", ""))
	r := p.run("verify", "login")
	mu.Lock()
	n := len(got)
	mu.Unlock()
	if n > 0 {
		t.Errorf("the redirect target received the check's request %d times (with its secrets)", n)
	}
	evilAddr := strings.TrimPrefix(evilHost, "http://")
	t.Logf("verify login: %v", r)
	if r.Code != 7 || !strings.Contains(r.Stdout, "login") || !strings.Contains(r.Stdout, "redirect") || !strings.Contains(r.Stdout, evilAddr) {
		t.Errorf("verify login: want exit 7 naming the redirect to %s: %v", evilAddr, r)
	}
	// The opt-in (checks: is the last section of rekey.yaml).
	p.configure("", check("moved", "/moved", "      follow_redirects: same-origin\n")+check("samehost", "/login", "      follow_redirects: same-origin\n"))
	if r := p.run("verify", "moved"); r.Code != 0 {
		t.Errorf("verify moved (follow_redirects: same-origin, same origin): %v", r)
	}
	r = p.run("verify", "samehost")
	mu.Lock()
	n = len(got)
	mu.Unlock()
	if n > 0 || r.Code != 7 || !strings.Contains(r.Stdout, evilAddr) {
		t.Errorf("verify samehost (same-origin, redirect to another origin): %d requests delivered; %v", n, r)
	}
}

// TestTrustRedactEveryVersion (item 10): a service, a command check and an
// on_rotate hook fail and print stored values: a retired version of
// JWT_SECRET raw, the current one in base64, hex and base64 inside a
// longer token, the previous one JSON-escaped and URL-escaped, an old
// ANTHROPIC_API_KEY in base64url. Nothing rekey prints holds any of them.
func TestTrustRedactEveryVersion(t *testing.T) {
	p := tpNewProject(t)
	p.must("rotate", "JWT_SECRET")
	p.must("rotate", "JWT_SECRET")
	if r := p.runInput("sk-ant-api03-"+ctRandB64(30, base64.RawURLEncoding)+"\n", "set", "ANTHROPIC_API_KEY"); r.Code != 0 {
		t.Fatalf("set ANTHROPIC_API_KEY: %v", r)
	}
	jwt := p.versions("JWT_SECRET")
	ant := p.versions("ANTHROPIC_API_KEY")
	if len(jwt) < 3 {
		t.Fatalf("JWT_SECRET has %d versions, want 3", len(jwt))
	}
	retired, prev, cur := jwt[0], jwt[1], jwt[2]
	js, _ := json.Marshal(prev)
	leaks := []string{
		retired,
		base64.StdEncoding.EncodeToString([]byte(cur)),
		hex.EncodeToString([]byte(cur)),
		base64.StdEncoding.EncodeToString([]byte("Bearer " + cur + " ok")),
		strings.ReplaceAll(string(js[1:len(js)-1]), "/", `\/`),
		url.QueryEscape(prev),
		base64.RawURLEncoding.EncodeToString([]byte(ant[0])),
	}
	if err := os.WriteFile(filepath.Join(p.dir, "leak.txt"), []byte(strings.Join(leaks, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var checks strings.Builder
	checks.WriteString("checks:\n")
	for i := range leaks {
		fmt.Fprintf(&checks, "  leak%d:\n    command: [sh, -c, \"sed -n %dp leak.txt; exit 1\"]\n    retries: 0\n", i, i+1)
	}
	p.configure("    sessions: {mode: immediate, on_rotate: [{command: [sh, -c, \"cat leak.txt; exit 2\"]}]}\n",
		"services:\n  api:\n    restart: [sh, -c, \"cat leak.txt; exit 3\"]\n    status: [sh, -c, \"cat leak.txt; exit 3\"]\n    consumes: [ANTHROPIC_API_KEY]\n"+checks.String())

	var outputs []string
	for _, args := range [][]string{
		{"services", "restart"},
		{"services", "status"},
		{"services", "status", "--json"},
		{"verify"},
		{"verify", "--json"},
		{"rotate", "JWT_SECRET"}, // the hook fails: the rotation rolls back
	} {
		r := p.run(args...)
		if r.Code == 0 {
			t.Errorf("rekey %s succeeded; the command should fail", strings.Join(args, " "))
		}
		t.Logf("rekey %s: exit %d\n%s%s", strings.Join(args, " "), r.Code, r.Stdout, r.Stderr)
		outputs = append(outputs, "rekey "+strings.Join(args, " ")+"\n"+r.Stdout+r.Stderr)
	}
	for _, o := range outputs {
		for i, l := range leaks {
			if strings.Contains(o, l) {
				t.Errorf("leak %d appears in the output of %s", i, strings.SplitN(o, "\n", 2)[0])
			}
		}
		for _, v := range append(jwt, ant...) {
			for _, f := range forms(v) {
				if strings.Contains(o, f) {
					t.Errorf("a stored value (%d bytes) appears in the output of %s", len(v), strings.SplitN(o, "\n", 2)[0])
				}
			}
		}
	}
	// The output is still useful: the failing commands are named, and
	// what they printed is shown, redacted.
	if all := strings.Join(outputs, "\n"); !strings.Contains(all, "[REDACTED]") {
		t.Errorf("no output shows a redacted line")
	}
}
