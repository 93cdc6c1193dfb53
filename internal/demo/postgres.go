package demo

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/dotenv"
	"github.com/rekeyhq/rekey/internal/demo/atlasdemo"
	"github.com/rekeyhq/rekey/internal/pgcluster"
	"github.com/rekeyhq/rekey/internal/postgres"
	"github.com/rekeyhq/rekey/internal/textsafe"
)

// The demo's patients, and its default grace: tokens live as long as the
// previous JWT secret and database role keep working after a rotation,
// short enough to watch the grace end (Options.Grace, --grace).
const (
	patients     = 20
	DefaultGrace = 20 * time.Second
)

// pgDemo is what the PostgreSQL demo runs on.
type pgDemo struct {
	*session
	app     string // the reference app's binary
	cluster *pgcluster.Cluster
	db      *atlasdemo.DB
	listen  string // 127.0.0.1:PORT of the app
	base    string // http://127.0.0.1:PORT
	pidfile string // set once the app may run
	t0      time.Time
	grace   string // the token lifetime and the grace, as rekey.yaml writes it ("20s")
}

// Postgres is `rekey demo --with-postgres`: a throwaway PostgreSQL
// cluster, the reference app on it, and the runbook run with rekey.
// Everything is stopped at the end, or when ctx ends; with o.Keep,
// PostgreSQL and the app keep running until ctx ends.
func Postgres(ctx context.Context, o Options) error {
	s, err := newSession(o, "rekey-demo-pg-")
	if err != nil {
		return err
	}
	g := o.Grace
	if g <= 0 {
		g = DefaultGrace
	}
	d := &pgDemo{session: s, t0: time.Now(), grace: rekey.FormatDuration(g)}
	if d.app, err = FindApp(ctx, o, s.dir); err != nil {
		return err
	}
	d.env[atlasdemo.ParentPIDEnv] = strconv.Itoa(os.Getpid()) // the app exits if the demo dies
	defer d.cleanup()
	if err := d.setup(ctx); err != nil {
		return d.interrupted(ctx, err)
	}
	if err := d.runbook(ctx); err != nil {
		return d.interrupted(ctx, err)
	}
	d.say("\n== The runbook took %s, PostgreSQL start included.", time.Since(d.t0).Round(100*time.Millisecond))
	d.tryNext(o.Keep)
	if o.Keep {
		d.say("\nPostgreSQL and the app keep running until you press Ctrl-C.")
		<-ctx.Done()
		d.say("")
	}
	return nil
}

// setup starts the cluster, provisions the database, writes the .env,
// starts the app and runs rekey init, then completes rekey.yaml.
func (d *pgDemo) setup(ctx context.Context) error {
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
	d.db, err = atlasdemo.Provision(pctx, atlasdemo.ProvisionOptions{SuperURL: c.SuperConnString("postgres"), Name: "atlas", Alternating: true, Patients: patients, Key: key, App: d.app})
	if err != nil {
		return err
	}
	d.say("Created database atlas: group role %s owns it; login role %s (a member) is the app's; %d patients with email and SSN encrypted (AES-256-GCM under ENCRYPTION_KEY).", d.db.Owner, d.db.Role, patients)
	d.say("%s", d.pairNote())

	port, err := atlasdemo.FreePort()
	if err != nil {
		return err
	}
	d.listen = "127.0.0.1:" + strconv.Itoa(port)
	d.base = "http://" + d.listen
	if err := d.writeProject(atlasdemo.NewEnv(d.db, key, port).Text()); err != nil {
		return err
	}
	admin := ""
	if d.db.Admin != "" {
		admin = " " + atlasdemo.AdminURLKey + ","
	}
	d.say("Wrote a .env shaped like the runbook's backend (DATABASE_URL, DATABASE_PASSWORD,%s JWT_SECRET, ENCRYPTION_KEY, ANTHROPIC_API_KEY, RUST_LOG, ...) and the team's rotation log.", admin)

	d.pidfile = "app.pid"
	if err := d.runApp(ctx, "start", "--env-file", ".env", "--listen", d.listen, "--pidfile", d.pidfile, "--token-ttl", d.grace); err != nil {
		return err
	}
	d.say("Started the app (atlas-app, the reference backend of examples/atlas-app: %s) on %s: POST /login issues HS512 tokens (%s lifetime), GET /patients/{id} decrypts PII; SIGHUP reloads its .env.", d.app, d.base, d.grace)
	return d.configure(ctx)
}

// pairNote says who changes the passwords of the alternating pair, and why
// (the server's version decides: internal/postgres/privileges.go).
func (d *pgDemo) pairNote() string {
	if d.db.Admin == "" {
		return fmt.Sprintf("PostgreSQL %d: login role %s has CREATEROLE and manages its pair itself (changed_by: self); on PostgreSQL 16 and later the demo creates an admin role instead, as the roles of a pair cannot change each other's password there.", d.db.Major, d.db.Role)
	}
	return fmt.Sprintf("PostgreSQL %d: the pair is managed by role %s (CREATEROLE + ADMIN OPTION on %s and %s), as PostgreSQL 16+ requires; the app's login role has no CREATEROLE. Its URL goes in the .env as %s, so init sets changed_by: admin.", d.db.Major, d.db.Admin, d.db.Owner, d.db.Role, atlasdemo.AdminURLKey)
}

// options are how rekey.yaml runs and checks the app, with app as its
// binary.
func (d *pgDemo) options(app string) atlasdemo.RekeyOptions {
	return atlasdemo.RekeyOptions{App: app, Listen: d.listen, Pidfile: d.pidfile, TokenTTL: d.grace,
		Sessions: "graceful", Grace: d.grace, PostgresGrace: d.grace, Patients: patients, DecryptSample: true}
}

// configure runs rekey init, completes rekey.yaml and approves it.
func (d *pgDemo) configure(ctx context.Context) error {
	via := ""
	if d.db.Admin != "" {
		via = " through " + atlasdemo.AdminURLKey
	}
	if err := d.rekey(ctx, "1. Inventory the .env: classify every key, seal the current values as v1, read the last rotation dates from the log; --postgres-alternating creates the second login role (atlas_green)"+via+" so a password rotation never breaks a connection",
		nil, "init", "--env-file", ".env", "--import-log", "secret-rotation-log.md", "--postgres-alternating"); err != nil {
		return err
	}
	if err := atlasdemo.Configure(filepath.Join(d.proj, "rekey.yaml"), d.options(d.app)); err != nil {
		return err
	}
	_, reenc, svcs, checks := atlasdemo.Sections(d.options("atlas-app"))
	d.say("\n== 2. Tell rekey what consumes the secrets and how to check the app (added to rekey.yaml; the runbook's steps 4 to 7):")
	changedBy := "self"
	if d.db.Admin != "" {
		changedBy = "admin, admin_secret: " + atlasdemo.AdminURLKey
	}
	d.say("secrets:\n  JWT_SECRET:\n    sessions: {mode: graceful, grace: %s}   # old tokens work until they expire\n  ENCRYPTION_KEY:\n    reencrypt:\n%s  DATABASE_PASSWORD:\n    postgres: {strategy: alternating, roles: [atlas_blue, atlas_green], changed_by: %s, grace: %s, ...}",
		d.grace, indent(reenc, "      "), changedBy, d.grace)
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

// before is what a client sees before the rotation.
type before struct {
	tok      string   // a token issued before
	url      string   // the DATABASE_URL before
	patients []string // every patient as read before
}

// runbook runs the seed's runbook with rekey.
func (d *pgDemo) runbook(ctx context.Context) error {
	if err := d.rekey(ctx, "3. What is due? (the log's dates are months old: overdue, so status exits 8)", map[int]bool{8: true}, "status"); err != nil {
		return err
	}
	if err := d.rekey(ctx, "4. The app works before the rotation: every check passes", nil, "verify"); err != nil {
		return err
	}
	old, err := d.before(ctx)
	if err != nil {
		return err
	}
	if err := d.rekey(ctx, "5. Rotate every secret rekey can rotate, as one journaled rotation (runbook steps 1-7): new values sealed first; the idle role atlas_green gets the new password (SCRAM verifier, never plaintext); the .env gets the new values with JWT_SECRET_PREVIOUS and ENCRYPTION_KEY_PREVIOUS; the app reloads; every PII row is re-encrypted online; the app reloads without the previous key; the checks run",
		nil, "rotate", "--all"); err != nil {
		return err
	}
	rotatedAt := time.Now()
	if err := d.after(ctx, old); err != nil {
		return err
	}
	if err := d.rekey(ctx, "7. Verify on demand: one line per check", nil, "verify"); err != nil {
		return err
	}
	if err := d.graceEnds(ctx, old, rotatedAt); err != nil {
		return err
	}
	if err := d.rekey(ctx, "10. Status: everything rotated today", map[int]bool{8: true}, "status"); err != nil {
		return err
	}
	if err := d.rekey(ctx, "11. The rotation log, regenerated from the store (the runbook's format, with today's dates)", nil, "report"); err != nil {
		return err
	}
	return d.rekey(ctx, "12. The audit trail's hash chain is intact", nil, "audit", "verify")
}

// before logs a client in before the rotation and reads every patient.
func (d *pgDemo) before(ctx context.Context) (*before, error) {
	p, err := atlasdemo.Smoke(ctx, d.base, 1)
	if err != nil {
		return nil, rekey.Errorf(rekey.CodeVerifyFailed, "the app does not work before the rotation: %v", err)
	}
	b := &before{url: d.envValue("DATABASE_URL")}
	if b.tok, err = d.login(ctx); err != nil {
		return nil, err
	}
	if b.patients, err = d.patients(ctx, b.tok); err != nil {
		return nil, err
	}
	d.say("A client logs in now and keeps its token; patient 1 reads %q <%s>.", p.Name, deref(p.Email))
	return b, nil
}

// after shows what changed: tokens, sessions, PII and database roles.
func (d *pgDemo) after(ctx context.Context, old *before) error {
	d.say("\n== 6. After the rotation")
	newTok, err := d.login(ctx)
	if err != nil {
		return err
	}
	newSecret := []byte(d.envValue("JWT_SECRET"))
	d.say("login works: the new token is signed with the new JWT_SECRET (%s); the token from before is not (%s)",
		yes(atlasdemo.SignedWith(newSecret, newTok)), yes(atlasdemo.SignedWith(newSecret, old.tok)))
	code, _, err := atlasdemo.Get(ctx, d.base, old.tok, 1)
	if err != nil {
		return err
	}
	d.say("the token from before still works during the %s grace (graceful sessions): GET /patients/1 → %d", d.grace, code)
	now, err := d.patients(ctx, newTok)
	if err != nil {
		return err
	}
	d.say("PII still reads: %d of %d patients read back identical after re-encryption under the new key", same(old.patients, now), patients)
	newURL := d.envValue("DATABASE_URL")
	d.say("the database: the .env now logs in as %s (%s); %s still logs in until its grace ends (%s)",
		urlUser(newURL), loginWord(ctx, newURL), urlUser(old.url), loginWord(ctx, old.url))
	return nil
}

// graceEnds waits for the grace to end, then shows that the old token and
// the old password are refused and the app still works.
func (d *pgDemo) graceEnds(ctx context.Context, old *before, rotatedAt time.Time) error {
	g, _ := time.ParseDuration(d.grace)
	if wait := time.Until(rotatedAt.Add(g + time.Second)); wait > 0 {
		d.say("\n== 8. Waiting %s for the grace to end (it is %s here so that you can watch it; use at least the longest token lifetime)", wait.Round(time.Second), d.grace)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
	if err := d.rekey(ctx, "9. Any later rekey run ends the grace: JWT_SECRET_PREVIOUS leaves the .env, the app reloads, atlas_blue gets a random password nobody knows", nil, "rotate", "--due"); err != nil {
		return err
	}
	code, _, err := atlasdemo.Get(ctx, d.base, old.tok, 1)
	if err != nil {
		return err
	}
	d.say("the token from before the rotation is refused now: GET /patients/1 → %d", code)
	newURL := d.envValue("DATABASE_URL")
	d.say("the old password is refused: %s logs in with it: %s; the app's login role %s: %s", urlUser(old.url), loginWord(ctx, old.url), urlUser(newURL), loginWord(ctx, newURL))
	p, err := atlasdemo.Smoke(ctx, d.base, patients)
	if err != nil {
		return rekey.Errorf(rekey.CodeVerifyFailed, "the app does not work after the grace: %v", err)
	}
	d.say("login and PII still work: patient %d reads %q", patients, p.Name)
	return nil
}

func (d *pgDemo) tryNext(running bool) {
	cd := d.tryNextHeader()
	if running {
		d.say(`
== Try next, in another terminal:
%s  rekey services status
  rekey rotate ENCRYPTION_KEY          # re-encrypts the 20 rows while the app serves
  rekey rotate JWT_SECRET --emergency  # a leaked secret: never rolled back
  rekey verify
  %s smoke --url %s
  rekey history DATABASE_PASSWORD      # which role each version belongs to
  rekey audit --limit 20`, cd, d.app, d.base)
		return
	}
	d.say(`
== Try next:
  rekey demo --with-postgres --keep    # the same, then keeps PostgreSQL and the app running to explore
%s  rekey history JWT_SECRET             # versions and fingerprints (the folder stays; the database is gone)
  rekey audit --limit 20`, cd)
}

// cleanup stops the app and the cluster (also after an error or Ctrl-C).
func (d *pgDemo) cleanup() {
	if d.pidfile != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		_ = d.appCommand(ctx, "stop", "--pidfile", d.pidfile).Run()
		cancel()
	}
	if d.cluster != nil {
		if err := d.cluster.Stop(); err != nil {
			fmt.Fprintf(d.o.Stderr, "rekey: warning: %s\n", textsafe.Lines("stopping the demo's PostgreSQL: "+err.Error()))
		} else {
			d.say("Stopped the app and removed the throwaway PostgreSQL cluster.")
		}
	}
}

// appCommand is a process command of the app, run in the project with
// the demo's environment less rekey's key material.
func (d *pgDemo) appCommand(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, d.app, args...)
	cmd.Dir = d.proj
	cmd.Env = append([]string(nil), environOr(d.o.Environ)...)
	for k, v := range d.env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Env = rekey.ChildEnv(cmd.Env) // the app never needs rekey's key material
	return cmd
}

// runApp runs a process command of the app.
func (d *pgDemo) runApp(ctx context.Context, args ...string) error {
	out, err := d.appCommand(ctx, args...).CombinedOutput()
	if err != nil {
		return rekey.Errorf(rekey.CodeInternal, "atlas-app %s: %v: %s", args[0], err, strings.TrimSpace(string(out)))
	}
	return nil
}

func (d *pgDemo) envValue(key string) string {
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

func (d *pgDemo) login(ctx context.Context) (string, error) {
	tok, err := atlasdemo.Login(ctx, d.base)
	if err != nil {
		return "", rekey.Errorf(rekey.CodeVerifyFailed, "login: %v", err)
	}
	return tok, nil
}

func (d *pgDemo) patients(ctx context.Context, tok string) ([]string, error) {
	var out []string
	for id := 1; id <= patients; id++ {
		code, body, err := atlasdemo.Get(ctx, d.base, tok, id)
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
