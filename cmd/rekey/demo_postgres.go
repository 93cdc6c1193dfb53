package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/dotenv"
	"github.com/rekeyhq/rekey/examples/atlas-app/atlas"
	"github.com/rekeyhq/rekey/examples/atlas-app/atlasdemo"
	"github.com/rekeyhq/rekey/internal/pgcluster"
	"github.com/rekeyhq/rekey/internal/postgres"
)

// The demo's timings: tokens live demoTokenTTL and the previous JWT secret
// and database role keep working demoGrace after a rotation, short enough
// to watch the grace end.
const (
	demoPatients = 20
	demoTokenTTL = "20s"
	demoGrace    = "20s"
)

// demoPG is what the PostgreSQL demo runs on.
type demoPG struct {
	a       *app
	w       io.Writer
	dir     string // the demo folder
	proj    string // the project (rekey.yaml, .env)
	cluster *pgcluster.Cluster
	db      *atlasdemo.DB
	base    string // http://127.0.0.1:PORT of the app
	pidfile string
	self    string // the rekey binary
	sub     *Main
	t0      time.Time
}

// runDemoPostgres is `rekey demo --with-postgres`: a throwaway PostgreSQL
// cluster, the reference app on it, and the runbook run with rekey.
func (a *app) runDemoPostgres(ctx context.Context, dir string, keep bool) (err error) {
	d := &demoPG{a: a, w: a.out(), t0: time.Now()}
	if d.self, err = os.Executable(); err != nil {
		return err
	}
	if dir == "" {
		if dir, err = os.MkdirTemp("", "rekey-demo-pg-"); err != nil {
			return err
		}
	} else if dir, err = a.abs(dir); err != nil {
		return err
	}
	d.dir, d.proj = dir, filepath.Join(dir, "atlas-backend")
	if fileExists(filepath.Join(d.proj, "rekey.yaml")) {
		return rekey.Errorf(rekey.CodeConflict, "%s already holds a demo", d.proj).WithHint("pass another --dir, or remove it")
	}
	if err := os.MkdirAll(d.proj, 0o755); err != nil {
		return err
	}
	defer d.cleanup()
	if err := d.setup(ctx); err != nil {
		return d.interrupted(ctx, err)
	}
	if err := d.runbook(ctx); err != nil {
		return d.interrupted(ctx, err)
	}
	took := time.Since(d.t0).Round(100 * time.Millisecond)
	fmt.Fprintf(d.w, "\n== The runbook took %s, PostgreSQL start included.\n", took)
	if keep {
		d.tryNext(true)
		fmt.Fprintf(d.w, "\nPostgreSQL and the app keep running until you press Ctrl-C.\n")
		<-ctx.Done()
		fmt.Fprintln(d.w)
		return nil
	}
	d.tryNext(false)
	return nil
}

// interrupted turns the error of a demo stopped by Ctrl-C into exit 130.
func (d *demoPG) interrupted(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		d.say("\nInterrupted: cleaning up.")
		return &exitError{code: 130}
	}
	return err
}

func (d *demoPG) say(format string, args ...any) { fmt.Fprintf(d.w, format+"\n", args...) }

// setup starts the cluster, provisions the database, writes the .env,
// starts the app and runs rekey init, then completes rekey.yaml.
func (d *demoPG) setup(ctx context.Context) error {
	d.say("rekey demo --with-postgres in %s", d.proj)
	c, err := pgcluster.Start()
	if errors.Is(err, pgcluster.ErrUnavailable) {
		return rekey.Wrap(rekey.CodeNotFound, err, "the PostgreSQL demo needs PostgreSQL's server binaries").
			WithHint("install them (apt-get install postgresql, brew install postgresql), or point %s at their folder; `rekey demo` needs no server", pgcluster.BinDirEnv)
	}
	if err != nil {
		return err
	}
	d.cluster = c
	d.say("Started a throwaway PostgreSQL %s on 127.0.0.1:%d (removed at the end).", "cluster", c.Port)

	key := atlasdemo.Random(32, base64.StdEncoding)
	pctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	d.db, err = atlasdemo.Provision(pctx, atlasdemo.ProvisionOptions{SuperURL: c.SuperConnString("postgres"), Name: "atlas", Alternating: true, Patients: demoPatients, Key: key})
	if err != nil {
		return err
	}
	d.say("Created database atlas: group role %s owns it; login role %s (a member) is the app's; %d patients with email and SSN encrypted (AES-256-GCM under ENCRYPTION_KEY).", d.db.Owner, d.db.Role, demoPatients)

	port, err := atlasdemo.FreePort()
	if err != nil {
		return err
	}
	d.base = "http://127.0.0.1:" + strconv.Itoa(port)
	env := atlasdemo.NewEnv(d.db, key, port)
	if err := dotenv.WriteFileAtomic(filepath.Join(d.proj, ".env"), []byte(env.Text()), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(d.proj, "secret-rotation-log.md"), demoLog, 0o644); err != nil {
		return err
	}
	d.pidfile = "app.pid"
	d.sub = &Main{Stdin: bytes.NewReader(nil), Stdout: d.w, Stderr: d.a.m.Stderr, Dir: d.proj, Env: map[string]string{
		"XDG_CONFIG_HOME":  filepath.Join(d.dir, "config"),
		"XDG_STATE_HOME":   filepath.Join(d.dir, "state"),
		"REKEY_MASTER_KEY": "",
		atlas.ParentPIDEnv: strconv.Itoa(os.Getpid()), // the app exits if the demo dies
	}}
	for k, v := range d.a.m.Env {
		if _, ok := d.sub.Env[k]; !ok {
			d.sub.Env[k] = v
		}
	}
	d.say("Wrote a .env shaped like the runbook's backend (DATABASE_URL, DATABASE_PASSWORD, JWT_SECRET, ENCRYPTION_KEY, ANTHROPIC_API_KEY, RUST_LOG, ...) and the team's rotation log.")

	if err := d.app(ctx, "start", "--env-file", ".env", "--listen", strings.TrimPrefix(d.base, "http://"), "--pidfile", d.pidfile, "--token-ttl", demoTokenTTL); err != nil {
		return err
	}
	d.say("Started the app (`rekey demo-app`, the reference backend of examples/atlas-app) on %s: POST /login issues HS512 tokens (%s lifetime), GET /patients/{id} decrypts PII; SIGHUP reloads its .env.", d.base, demoTokenTTL)

	if err := d.rekey(ctx, "1. Inventory the .env: classify every key, seal the current values as v1, read the last rotation dates from the log; --postgres-alternating creates the second login role (atlas_green) so a password rotation never breaks a connection",
		nil, "init", "--env-file", ".env", "--import-log", "secret-rotation-log.md", "--postgres-alternating"); err != nil {
		return err
	}
	if err := atlasdemo.Configure(filepath.Join(d.proj, "rekey.yaml"), atlasdemo.RekeyOptions{
		App: []string{d.self, "demo-app"}, Listen: strings.TrimPrefix(d.base, "http://"), Pidfile: d.pidfile, TokenTTL: demoTokenTTL,
		Sessions: "graceful", Grace: demoGrace, PostgresGrace: demoGrace, Patients: demoPatients, DecryptSample: true,
	}); err != nil {
		return err
	}
	_, reenc, svcs, checks := atlasdemo.Sections(atlasdemo.RekeyOptions{App: []string{"rekey", "demo-app"}, Listen: strings.TrimPrefix(d.base, "http://"), Pidfile: d.pidfile, TokenTTL: demoTokenTTL, Sessions: "graceful", Grace: demoGrace, Patients: demoPatients, DecryptSample: true})
	d.say("\n== 2. Tell rekey what consumes the secrets and how to check the app (added to rekey.yaml; the runbook's steps 4 to 7):")
	d.say("secrets:\n  JWT_SECRET:\n    sessions: {mode: graceful, grace: %s}   # old tokens work until they expire\n  ENCRYPTION_KEY:\n    reencrypt:\n%s  DATABASE_PASSWORD:\n    postgres: {strategy: alternating, roles: [atlas_blue, atlas_green], grace: %s, ...}",
		demoGrace, indent(reenc, "      "), demoGrace)
	d.say("services:\n%schecks:\n%s", indent(svcs, "  "), indent(checks, "  "))
	d.say("rekey runs those commands and sends values where rekey.yaml says, so it acts only on a rekey.yaml approved on this machine: approve the edit.")
	return d.rekey(ctx, "", nil, "config", "trust")
}

func indent(s, p string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i := range lines {
		lines[i] = p + lines[i]
	}
	return strings.Join(lines, "\n") + "\n"
}

// runbook runs the seed's runbook with rekey.
func (d *demoPG) runbook(ctx context.Context) error {
	if err := d.rekey(ctx, "3. What is due? (the log's dates are months old: overdue, so status exits 8)", map[int]bool{8: true}, "status"); err != nil {
		return err
	}
	if err := d.rekey(ctx, "4. The app works before the rotation: every check passes", nil, "verify"); err != nil {
		return err
	}
	before, err := atlas.Smoke(ctx, d.base, 1)
	if err != nil {
		return rekey.Errorf(rekey.CodeVerifyFailed, "the app does not work before the rotation: %v", err)
	}
	oldTok, err := d.login(ctx)
	if err != nil {
		return err
	}
	oldURL := d.envValue("DATABASE_URL")
	oldPatients, err := d.patients(ctx, oldTok)
	if err != nil {
		return err
	}
	d.say("A client logs in now and keeps its token; patient 1 reads %q <%s>.", before.Name, deref(before.Email))

	if err := d.rekey(ctx, "5. Rotate every secret rekey can rotate, as one journaled rotation (runbook steps 1-7): new values sealed first; the idle role atlas_green gets the new password (SCRAM verifier, never plaintext); the .env gets the new values with JWT_SECRET_PREVIOUS and ENCRYPTION_KEY_PREVIOUS; the app reloads; every PII row is re-encrypted online; the app reloads without the previous key; the checks run",
		nil, "rotate", "--all"); err != nil {
		return err
	}
	rotatedAt := time.Now()
	d.say("\n== 6. After the rotation")
	newTok, err := d.login(ctx)
	if err != nil {
		return err
	}
	newSecret := d.envValue("JWT_SECRET")
	_, errNew := atlas.VerifyToken([][]byte{[]byte(newSecret)}, newTok)
	_, errOld := atlas.VerifyToken([][]byte{[]byte(newSecret)}, oldTok)
	d.say("login works: the new token is signed with the new JWT_SECRET (%s); the token from before is not (%s)", yes(errNew == nil), yes(errOld == nil))
	code, err := d.get(ctx, oldTok, 1)
	if err != nil {
		return err
	}
	d.say("the token from before still works during the %s grace (graceful sessions): GET /patients/1 → %d", demoGrace, code)
	after, err := d.patients(ctx, newTok)
	if err != nil {
		return err
	}
	d.say("PII still reads: %d of %d patients read back identical after re-encryption under the new key", same(oldPatients, after), demoPatients)
	newURL := d.envValue("DATABASE_URL")
	d.say("the database: the .env now logs in as %s (%s); %s still logs in until its grace ends (%s)",
		urlUser(newURL), loginWord(ctx, newURL), urlUser(oldURL), loginWord(ctx, oldURL))

	if err := d.rekey(ctx, "7. Verify on demand: one line per check", nil, "verify"); err != nil {
		return err
	}
	grace, _ := time.ParseDuration(demoGrace)
	wait := time.Until(rotatedAt.Add(grace + time.Second))
	if wait > 0 {
		d.say("\n== 8. Waiting %s for the grace to end (it is %s here so that you can watch it; use at least the longest token lifetime)", wait.Round(time.Second), demoGrace)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
	if err := d.rekey(ctx, "9. Any later rekey run ends the grace: JWT_SECRET_PREVIOUS leaves the .env, the app reloads, atlas_blue gets a random password nobody knows", nil, "rotate", "--due"); err != nil {
		return err
	}
	code, err = d.get(ctx, oldTok, 1)
	if err != nil {
		return err
	}
	d.say("the token from before the rotation is refused now: GET /patients/1 → %d", code)
	d.say("the old password is refused: %s logs in with it: %s; the app's login role %s: %s", urlUser(oldURL), loginWord(ctx, oldURL), urlUser(newURL), loginWord(ctx, newURL))
	if p, err := atlas.Smoke(ctx, d.base, demoPatients); err != nil {
		return rekey.Errorf(rekey.CodeVerifyFailed, "the app does not work after the grace: %v", err)
	} else {
		d.say("login and PII still work: patient %d reads %q", demoPatients, p.Name)
	}
	if err := d.rekey(ctx, "10. Status: everything rotated today", map[int]bool{8: true}, "status"); err != nil {
		return err
	}
	if err := d.rekey(ctx, "11. The rotation log, regenerated from the store (the runbook's format, with today's dates)", nil, "report"); err != nil {
		return err
	}
	return d.rekey(ctx, "12. The audit trail's hash chain is intact", nil, "audit", "verify")
}

func (d *demoPG) tryNext(running bool) {
	cd := fmt.Sprintf("  cd %s\n  export XDG_CONFIG_HOME=%s XDG_STATE_HOME=%s\n  alias rekey=%s\n", d.proj, filepath.Join(d.dir, "config"), filepath.Join(d.dir, "state"), d.self)
	if running {
		d.say(`
== Try next, in another terminal:
%s  rekey services status
  rekey rotate ENCRYPTION_KEY          # re-encrypts the 20 rows while the app serves
  rekey rotate JWT_SECRET --emergency  # a leaked secret: never rolled back
  rekey verify
  rekey demo-app smoke --url %s
  rekey history DATABASE_PASSWORD      # which role each version belongs to
  rekey audit --limit 20`, cd, d.base)
		return
	}
	d.say(`
== Try next:
  rekey demo --with-postgres --keep    # the same, then keeps PostgreSQL and the app running to explore
%s  rekey history JWT_SECRET             # versions and fingerprints (the folder stays; the database is gone)
  rekey audit --limit 20`, cd)
}

// cleanup stops the app and the cluster (also after an error or Ctrl-C).
func (d *demoPG) cleanup() {
	if d.pidfile != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		_ = atlas.Main(ctx, atlas.Options{Stdout: io.Discard, Stderr: io.Discard}, []string{"stop", "--pidfile", filepath.Join(d.proj, d.pidfile)})
		cancel()
	}
	if d.cluster != nil {
		if err := d.cluster.Stop(); err != nil {
			d.a.warnf("stopping the demo's PostgreSQL: %v", err)
		} else {
			d.say("Stopped the app and removed the throwaway PostgreSQL cluster.")
		}
	}
}

// rekey runs one narrated rekey command in the project.
func (d *demoPG) rekey(ctx context.Context, say string, ok map[int]bool, args ...string) error {
	if say != "" {
		d.say("\n== %s", say)
	}
	d.say("$ rekey %s", strings.Join(args, " "))
	if code := d.sub.Run(ctx, args); code != 0 && !ok[code] {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return rekey.Errorf(rekey.CodeInternal, "demo step `rekey %s` exited %d", strings.Join(args, " "), code)
	}
	return nil
}

// app runs a process command of the app (the rekey binary's demo-app).
func (d *demoPG) app(ctx context.Context, args ...string) error {
	cmd := exec.CommandContext(ctx, d.self, append([]string{"demo-app"}, args...)...)
	cmd.Dir = d.proj
	cmd.Env = d.a.environ()
	for k, v := range d.sub.Env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Env = rekey.ChildEnv(cmd.Env) // the app never needs rekey's key material
	out, err := cmd.CombinedOutput()
	if err != nil {
		return rekey.Errorf(rekey.CodeInternal, "rekey demo-app %s: %v: %s", args[0], err, strings.TrimSpace(string(out)))
	}
	return nil
}

func (d *demoPG) envValue(key string) string {
	b, err := os.ReadFile(filepath.Join(d.proj, ".env"))
	if err != nil {
		return ""
	}
	f, err := dotenv.Parse(".env", b)
	if err != nil {
		return ""
	}
	v, _ := f.Get(key)
	return v
}

func (d *demoPG) login(ctx context.Context) (string, error) {
	tok, err := demoLogin(ctx, d.base)
	if err != nil {
		return "", rekey.Errorf(rekey.CodeVerifyFailed, "login: %v", err)
	}
	return tok, nil
}

func (d *demoPG) get(ctx context.Context, tok string, id int) (int, error) {
	code, _, err := demoGet(ctx, d.base, tok, id)
	return code, err
}

func (d *demoPG) patients(ctx context.Context, tok string) ([]string, error) {
	var out []string
	for id := 1; id <= demoPatients; id++ {
		code, body, err := demoGet(ctx, d.base, tok, id)
		if err != nil {
			return nil, err
		}
		if code != 200 {
			return nil, rekey.Errorf(rekey.CodeVerifyFailed, "GET /patients/%d: %d", id, code)
		}
		out = append(out, string(body))
	}
	return out, nil
}

func same(a, b []string) int {
	n := 0
	for i := range a {
		if i < len(b) && a[i] == b[i] {
			n++
		}
	}
	return n
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func yes(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func urlUser(u string) string {
	p, err := postgres.ParseURL(u)
	if err != nil {
		return "?"
	}
	return p.User
}

// loginWord says whether the URL logs in.
func loginWord(ctx context.Context, u string) string {
	p, err := postgres.ParseURL(u)
	if err != nil {
		return "not a URL"
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ok, err := postgres.TryLogin(ctx, p)
	switch {
	case err != nil:
		return "unreachable"
	case ok:
		return "accepted"
	default:
		return "refused"
	}
}

var demoClient = &http.Client{Timeout: 20 * time.Second}

// demoLogin logs in as the demo user and returns the token.
func demoLogin(ctx context.Context, base string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, "POST", base+"/login", strings.NewReader(`{"username":"`+atlas.DemoUser+`","password":"`+atlas.DefaultDemoPassword+`"}`))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := demoClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var out struct{ Token string }
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&out); err != nil || resp.StatusCode != http.StatusOK || out.Token == "" {
		return "", fmt.Errorf("POST /login: status %d, no token", resp.StatusCode)
	}
	return out.Token, nil
}

// demoGet reads patient id with tok: the status and the body.
func demoGet(ctx context.Context, base, tok string, id int) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", base+"/patients/"+strconv.Itoa(id), nil)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := demoClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	return resp.StatusCode, body, err
}
