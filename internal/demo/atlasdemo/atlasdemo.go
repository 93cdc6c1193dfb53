// Package atlasdemo sets up the reference application (examples/atlas-app)
// for rekey's end-to-end runs — `rekey demo --with-postgres`, the
// end-to-end tests of cmd/rekey and the load loop of bench/ — the way a
// team would: a database and its login role on a PostgreSQL server, demo
// patients with encrypted PII, a .env shaped like the runbook's backend,
// and the services:, checks:, sessions: and reencrypt: sections of
// rekey.yaml around what `rekey init` wrote. It talks to the app only
// through its binary and its HTTP API (client.go), never links it: the
// rekey binary stays free of the app and its JWT library.
package atlasdemo

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/postgres"
)

// ParentPIDEnv names the environment variable that makes the app exit when
// that process is gone (atlas.ParentPIDEnv): a demo or a test that dies does
// not leave its app behind.
const ParentPIDEnv = "ATLAS_PARENT_PID"

// DB is the application's database on a server.
type DB struct {
	Host     string
	Port     int
	Name     string // database
	Owner    string // NOLOGIN group role owning the database and its tables
	Role     string // login role of DATABASE_URL, member of Owner
	Password string // Role's password
	// Major is the server's major version (server_version_num).
	Major int
	// Admin is the role that manages an alternating pair on PostgreSQL 16
	// and later (AdminStatements), with AdminPassword; "" when Role
	// manages its pair itself (CREATEROLE, PostgreSQL 15) or there is no
	// pair.
	Admin, AdminPassword string
}

// AdminURL is the admin connection's URL (PG_ADMIN_URL), "" without one.
func (d *DB) AdminURL() string {
	if d.Admin == "" {
		return ""
	}
	return d.URLFor(d.Admin, d.AdminPassword)
}

// AdminStatements create admin, the least-privileged role that manages the
// alternating pair whose first login role is first, a member of group, on
// PostgreSQL 16 and later (README's privilege table, alternating with
// changed_by: admin): CREATEROLE, and ADMIN OPTION on the group (to make the
// second role a member of it) and on first (to change its password); the
// second role gets ADMIN OPTION for admin when admin creates it. ADMIN
// OPTION only: INHERIT FALSE and SET FALSE, so admin cannot use the group's
// privileges (read the app's tables) by default. No password:
// set it with postgres.SetPassword (a SCRAM verifier, never the plaintext).
func AdminStatements(admin, group, first string) []string {
	q := postgres.QuoteIdent
	return []string{
		"CREATE ROLE " + q(admin) + " LOGIN CREATEROLE",
		"GRANT " + q(group) + " TO " + q(admin) + " WITH ADMIN OPTION, INHERIT FALSE, SET FALSE",
		"GRANT " + q(first) + " TO " + q(admin) + " WITH ADMIN OPTION, INHERIT FALSE, SET FALSE",
	}
}

// URL is the DATABASE_URL of the login role.
func (d *DB) URL() string { return d.URLFor(d.Role, d.Password) }

// URLFor is a DATABASE_URL for role and password on the database.
func (d *DB) URLFor(role, password string) string {
	u := url.URL{Scheme: "postgres", User: url.UserPassword(role, password), Host: net.JoinHostPort(d.Host, strconv.Itoa(d.Port)), Path: "/" + d.Name, RawQuery: "sslmode=disable"}
	return u.String()
}

// Random returns n random bytes in enc.
func Random(n int, enc *base64.Encoding) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return enc.EncodeToString(b)
}

// ProvisionOptions configures Provision.
type ProvisionOptions struct {
	// SuperURL is a superuser connection URL to the server's postgres database.
	SuperURL string
	// Name is the database; the roles are NAME_owner and NAME_app (NAME_blue
	// with Alternating).
	Name string
	// Alternating names the login role NAME_blue and sets it up for the
	// alternating strategy with the least privilege the server's version
	// needs: on PostgreSQL 15 the role gets CREATEROLE, so that it creates
	// its pair and changes the idle role's password itself (changed_by:
	// self); on 16 and later, where the roles of a pair cannot change each
	// other's password, the role gets no privilege and an admin role
	// NAME_admin (AdminStatements, a random password) does it (DB.Admin;
	// NewEnv writes its URL as PG_ADMIN_URL, which `rekey init
	// --postgres-alternating` takes as changed_by: admin).
	Alternating bool
	// Patients is the number of demo patients to seed; Key the ENCRYPTION_KEY
	// (base64 of 32 bytes) they are encrypted under.
	Patients int
	Key      string
	// App is the reference app's binary (atlas-app), which seeds them.
	App string
}

// Provision creates the group role owning the database and its tables, the
// login role (a member of it, with a random password), with Alternating on
// PostgreSQL 16 and later the admin role managing the pair (another random
// password), and the database; the app (o.App --seed, as the login role)
// creates the patients table and the demo patients. Objects then belong to
// the group role, so both roles of an alternating pair can use them.
// Passwords reach the server as SCRAM verifiers only.
func Provision(ctx context.Context, o ProvisionOptions) (*DB, error) {
	sp, err := postgres.ParseURL(o.SuperURL)
	if err != nil {
		return nil, err
	}
	su, err := postgres.Connect(ctx, sp)
	if err != nil {
		return nil, err
	}
	defer su.Close(context.Background())
	num, err := postgres.ServerVersionNum(ctx, su)
	if err != nil {
		return nil, err
	}
	d := &DB{Host: sp.Host, Port: sp.Port, Name: o.Name, Owner: o.Name + "_owner", Role: o.Name + "_app", Password: Random(24, base64.RawURLEncoding), Major: num / 10000}
	attrs := "LOGIN"
	if o.Alternating {
		d.Role = o.Name + "_blue"
		if d.Major < postgres.AdminOptionMajor {
			attrs = "LOGIN CREATEROLE"
		} else {
			d.Admin, d.AdminPassword = o.Name+"_admin", Random(24, base64.RawURLEncoding)
		}
	}
	q := postgres.QuoteIdent
	stmts := []string{
		"CREATE ROLE " + q(d.Owner) + " NOLOGIN",
		"CREATE ROLE " + q(d.Role) + " " + attrs + " IN ROLE " + q(d.Owner),
		"CREATE DATABASE " + q(d.Name) + " OWNER " + q(d.Owner),
	}
	if d.Admin != "" {
		stmts = append(stmts, AdminStatements(d.Admin, d.Owner, d.Role)...)
	}
	for _, s := range stmts {
		if _, err := su.Exec(ctx, s); err != nil {
			return nil, fmt.Errorf("atlasdemo: %s: %w", strings.Fields(s)[0]+" "+strings.Fields(s)[1], err)
		}
	}
	if err := postgres.SetPassword(ctx, su, d.Role, []byte(d.Password)); err != nil {
		return nil, err
	}
	if d.Admin != "" {
		if err := postgres.SetPassword(ctx, su, d.Admin, []byte(d.AdminPassword)); err != nil {
			return nil, err
		}
	}
	if err := seed(ctx, o, d); err != nil {
		return nil, err
	}
	// The login role created the table; hand it to the group role.
	sdb := sp
	sdb.Database = d.Name
	c, err := postgres.Connect(ctx, sdb)
	if err != nil {
		return nil, err
	}
	defer c.Close(context.Background())
	if _, err := c.Exec(ctx, "ALTER TABLE patients OWNER TO "+q(d.Owner)); err != nil {
		return nil, fmt.Errorf("atlasdemo: hand the table to %s: %w", d.Owner, err)
	}
	return d, nil
}

// seed runs `atlas-app --seed`, as the login role, with a .env of its own
// in a private temporary folder (removed at the end).
func seed(ctx context.Context, o ProvisionOptions, d *DB) error {
	key, err := base64.StdEncoding.DecodeString(o.Key)
	if err != nil || len(key) != 32 {
		return fmt.Errorf("atlasdemo: the encryption key must be base64 of 32 bytes")
	}
	tmp, err := os.MkdirTemp("", "atlasdemo-seed-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	app := *d
	app.Admin, app.AdminPassword = "", "" // the seed needs the login role only
	env := NewEnv(&app, o.Key, 0)
	envFile := filepath.Join(tmp, ".env")
	if err := os.WriteFile(envFile, []byte(env.Text()), 0o600); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, o.App, "--env-file", envFile, "--seed", strconv.Itoa(o.Patients))
	cmd.Env = rekey.ChildEnv(os.Environ())
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("atlasdemo: %s --seed %d: %v: %s", filepath.Base(o.App), o.Patients, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Env is the .env of the application, shaped like the runbook's backend.
type Env struct {
	Values map[string]string
	Order  []string
}

// NewEnv returns a .env for db with fresh secrets in the runbook's
// formats (JWT_SECRET: openssl rand -base64 64; ENCRYPTION_KEY: openssl
// rand -base64 32), the encryption key given (the one the patients were
// seeded under), and the app's port; with an admin role (DB.Admin), its
// URL as PG_ADMIN_URL after DATABASE_PASSWORD.
func NewEnv(db *DB, encryptionKey string, appPort int) *Env {
	e := &Env{Values: map[string]string{
		"DATABASE_URL":      db.URL(),
		"DATABASE_PASSWORD": db.Password,
		"JWT_SECRET":        Random(64, base64.StdEncoding),
		"ENCRYPTION_KEY":    encryptionKey,
		"ANTHROPIC_API_KEY": "sk-ant-api03-demo" + Random(30, base64.RawURLEncoding),
		"RUST_LOG":          "info",
		"PORT":              strconv.Itoa(appPort),
		"HOST":              "127.0.0.1",
	}, Order: []string{"DATABASE_URL", "DATABASE_PASSWORD", "", "JWT_SECRET", "ENCRYPTION_KEY", "ANTHROPIC_API_KEY", "", "RUST_LOG", "PORT", "HOST"}}
	if db.Admin != "" {
		e.Values[AdminURLKey] = db.AdminURL()
		e.Order = append(e.Order[:2], append([]string{AdminURLKey}, e.Order[2:]...)...)
	}
	return e
}

// AdminURLKey is the .env key of the admin connection (DB.AdminURL).
const AdminURLKey = "PG_ADMIN_URL"

// Text is the .env file.
func (e *Env) Text() string {
	var b strings.Builder
	b.WriteString("# Atlas PharmaTech backend (throwaway values for rekey's end-to-end runs)\n")
	for _, k := range e.Order {
		if k == "" {
			b.WriteString("\n")
			continue
		}
		fmt.Fprintf(&b, "%s=%s\n", k, e.Values[k])
	}
	return b.String()
}

// Secrets are the values of e that rekey manages.
func (e *Env) Secrets() []string {
	var out []string
	for _, k := range []string{"DATABASE_URL", "DATABASE_PASSWORD", AdminURLKey, "JWT_SECRET", "ENCRYPTION_KEY", "ANTHROPIC_API_KEY"} {
		if v, ok := e.Values[k]; ok {
			out = append(out, v)
		}
	}
	return out
}

// FreePort returns a TCP port free on 127.0.0.1 now.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// RekeyOptions says how Configure completes rekey.yaml.
type RekeyOptions struct {
	// App is the app's binary (atlas-app), which runs its process commands.
	App string
	// Listen is the app's address (host:port), Pidfile its pidfile
	// (relative to the project folder), TokenTTL its token lifetime.
	Listen, Pidfile, TokenTTL string
	// Sessions is the JWT_SECRET sessions mode (immediate or graceful);
	// Grace its grace period (no shorter than TokenTTL).
	Sessions, Grace string
	// PostgresGrace, when set, replaces the grace of an alternating
	// DATABASE_PASSWORD.
	PostgresGrace string
	// Patients is the number of seeded patients (the sql check).
	Patients int
	// DecryptSample adds the decrypt-sample check of the PII columns.
	DecryptSample bool
	// ExtraChecks are more checks, as YAML of the checks: mapping.
	ExtraChecks string
}

// Sections renders the YAML Configure adds: the sessions: and reencrypt:
// sections of JWT_SECRET and ENCRYPTION_KEY, and services: and checks:.
func Sections(o RekeyOptions) (sessions, reencrypt, services, checks string) {
	argv := func(args ...string) string {
		all := append([]string{o.App}, args...)
		for i, a := range all {
			all[i] = yamlScalar(a)
		}
		return "[" + strings.Join(all, ", ") + "]"
	}
	ttl := []string{}
	if o.TokenTTL != "" {
		ttl = []string{"--token-ttl", o.TokenTTL}
	}
	run := append([]string{"--env-file", ".env", "--listen", o.Listen, "--pidfile", o.Pidfile}, ttl...)
	sessions = "mode: " + o.Sessions + "\n"
	if o.Sessions == "graceful" {
		sessions += "grace: " + o.Grace + "           # no shorter than the app's token lifetime\n"
	}
	reencrypt = `database: DATABASE_URL
codec: aes-256-gcm            # base64(nonce || ciphertext || tag), the app's layout
encoding: base64
columns: [patients.email, patients.ssn]
mode: online                  # the app reads ENCRYPTION_KEY_PREVIOUS while rows move
`
	services = "atlas-app:\n" +
		"  start: " + argv(append([]string{"start"}, run...)...) + "\n" +
		"  restart: " + argv(append([]string{"restart"}, run...)...) + "   # SIGHUP: same process, same listener\n" +
		"  stop: " + argv("stop", "--pidfile", o.Pidfile) + "\n" +
		"  status: " + argv("status", "--pidfile", o.Pidfile) + "\n" +
		"  timeout: 30s\n" +
		"  consumes: all                # the backend reads its whole .env\n"
	base := "http://" + o.Listen
	checks = `login:
  http:
    method: POST
    url: ` + base + `/login
    headers: {Content-Type: application/json}
    body: '{"username": "demo", "password": "demo-password"}'
    expect: 200
    json_field: token
health: {http: {url: ` + base + `/health, expect: 200}}
api:                                # log in, then GET /patients/1 with the token
  command: ` + argv("smoke", "--url", base, "--patient", "1") + `
database: {postgres: {url: DATABASE_URL}}
patients: {sql: {url: DATABASE_URL, query: "SELECT count(*) FROM patients", expect: "` + strconv.Itoa(o.Patients) + `"}}
`
	if o.DecryptSample {
		checks += `pii:
  decrypt-sample: {url: DATABASE_URL, column: patients.ssn, rows: 10, key: ENCRYPTION_KEY, codec: aes-256-gcm, encoding: base64}
`
	}
	checks += o.ExtraChecks
	return
}

func yamlScalar(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:", r))
	}) < 0 && !strings.HasPrefix(s, "-") {
		return s
	}
	b, _ := yaml.Marshal(s)
	return strings.TrimSpace(string(b))
}

// Configure completes the rekey.yaml at path (written by `rekey init`)
// with Sections. rekey acts on the result once it is approved: run
// `rekey config trust` next, as the demo does.
func Configure(path string, o RekeyOptions) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return err
	}
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return fmt.Errorf("atlasdemo: %s is not a mapping", path)
	}
	root := doc.Content[0]
	sessions, reencrypt, services, checks := Sections(o)
	secrets := get(root, "secrets")
	if secrets == nil {
		return fmt.Errorf("atlasdemo: %s has no secrets", path)
	}
	for _, x := range []struct{ secret, key, body string }{
		{"JWT_SECRET", "sessions", sessions},
		{"ENCRYPTION_KEY", "reencrypt", reencrypt},
	} {
		s := get(secrets, x.secret)
		if s == nil {
			return fmt.Errorf("atlasdemo: %s has no secret %s", path, x.secret)
		}
		if err := set(s, x.key, x.body); err != nil {
			return err
		}
	}
	if o.PostgresGrace != "" {
		if pg := get(get(secrets, "DATABASE_PASSWORD"), "postgres"); pg != nil {
			if err := set(pg, "grace", o.PostgresGrace); err != nil {
				return err
			}
		}
	}
	if err := set(root, "services", services); err != nil {
		return err
	}
	if err := set(root, "checks", checks); err != nil {
		return err
	}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return err
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}

func get(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

// set replaces or appends key in mapping m with the YAML body.
func set(m *yaml.Node, key, body string) error {
	var v yaml.Node
	if err := yaml.Unmarshal([]byte(body), &v); err != nil {
		return fmt.Errorf("atlasdemo: %s: %w", key, err)
	}
	val := v.Content[0]
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			m.Content[i+1] = val
			return nil
		}
	}
	m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key}, val)
	return nil
}
