package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/rekeyhq/rekey/examples/atlas-app/atlas"
	"github.com/rekeyhq/rekey/internal/postgres"
	"github.com/rekeyhq/rekey/internal/testkit"
)

func TestMain(m *testing.M) { testkit.Main(m) }

func testCtx(t testing.TB) context.Context { return testkit.Ctx(t, 60*time.Second) }

func randomBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// secretText is a random URL-safe string (JWT secrets, role passwords).
func secretText(t testing.TB) string {
	return base64.RawURLEncoding.EncodeToString(randomBytes(t, 48))
}

func newKey(t testing.TB) string { return base64.StdEncoding.EncodeToString(randomBytes(t, 32)) }

// appDB is a fresh database owned by a fresh login role.
type appDB struct {
	role, password, db string
	url                string
}

func newAppDB(t *testing.T) *appDB {
	t.Helper()
	c := testkit.Cluster(t)
	name := testkit.Unique("atlas")
	d := &appDB{role: name, password: secretText(t), db: name}
	admin, err := c.Connect(testCtx(t), "")
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	if _, err := admin.Exec(testCtx(t), "CREATE ROLE "+postgres.QuoteIdent(d.role)+" LOGIN"); err != nil {
		t.Fatal(err)
	}
	if err := postgres.SetPassword(testCtx(t), admin, d.role, []byte(d.password)); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(testCtx(t), "CREATE DATABASE "+postgres.QuoteIdent(d.db)+" OWNER "+postgres.QuoteIdent(d.role)); err != nil {
		t.Fatal(err)
	}
	d.url = c.ConnString(d.role, d.password, d.db)
	return d
}

// env is the content of a .env; writeEnv writes it in a temp dir.
type env map[string]string

func writeEnv(t *testing.T, e env) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("# atlas-app test .env\n")
	for _, k := range []string{atlas.KeyDatabaseURL, atlas.KeyJWTSecret, atlas.KeyJWTSecretPrevious, atlas.KeyEncryptionKey, atlas.KeyEncryptionKeyPrevious} {
		if v, ok := e[k]; ok {
			fmt.Fprintf(&b, "%s=%q\n", k, v)
		}
	}
	p := filepath.Join(t.TempDir(), ".env")
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// syncBuffer collects log output from concurrent handlers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// app is a running server plus everything it said.
type app struct {
	t      *testing.T
	base   string // http://host:port
	client *http.Client
	log    *syncBuffer
	bodies *syncBuffer
}

// startApp loads the .env from disk like the binary does and serves it
// with httptest.
func startApp(t *testing.T, e env) *app {
	t.Helper()
	cfg, err := atlas.LoadEnvFile(writeEnv(t, e))
	if err != nil {
		t.Fatal(err)
	}
	a := &app{t: t, log: &syncBuffer{}, bodies: &syncBuffer{}}
	srv := httptest.NewServer(atlas.NewServer(cfg, slog.New(slog.NewTextHandler(a.log, nil))).Handler())
	t.Cleanup(srv.Close)
	a.base, a.client = srv.URL, srv.Client()
	return a
}

func (a *app) do(method, path, token string, body any) (int, []byte) {
	a.t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(testCtx(a.t), method, a.base+path, r)
	if err != nil {
		a.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := a.client.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		a.t.Fatal(err)
	}
	a.bodies.Write(b)
	a.bodies.Write([]byte("\n"))
	return resp.StatusCode, b
}

func (a *app) login() string {
	a.t.Helper()
	code, body := a.do("POST", "/login", "", map[string]string{"username": "demo", "password": atlas.DefaultDemoPassword})
	if code != http.StatusOK {
		a.t.Fatalf("login: %d %s", code, body)
	}
	var out struct{ Token string }
	if err := json.Unmarshal(body, &out); err != nil || out.Token == "" {
		a.t.Fatalf("login body %s: %v", body, err)
	}
	return out.Token
}

func (a *app) patient(token string, id int64) (int, atlas.Patient, []byte) {
	a.t.Helper()
	code, body := a.do("GET", "/patients/"+strconv.FormatInt(id, 10), token, nil)
	var p atlas.Patient
	if code == http.StatusOK {
		if err := json.Unmarshal(body, &p); err != nil {
			a.t.Fatalf("patient body %s: %v", body, err)
		}
	}
	return code, p, body
}

// demoPatients reads patients 1 to n with token: each is the seeded demo
// patient (how: what the failure message adds).
func (a *app) demoPatients(token string, n int64, how string) {
	a.t.Helper()
	for id := int64(1); id <= n; id++ {
		code, p, body := a.patient(token, id)
		if code != http.StatusOK {
			a.t.Fatalf("GET /patients/%d%s: %d %s", id, how, code, body)
		}
		samePatient(a.t, p, atlas.DemoPatient(id))
	}
}

// noSecrets fails if a secret shows up in a response body or the log.
func (a *app) noSecrets(secrets ...string) {
	a.t.Helper()
	bodies, logs := a.bodies.String(), a.log.String()
	for _, s := range secrets {
		if s == "" {
			continue
		}
		if strings.Contains(bodies, s) {
			a.t.Errorf("a response body contains a secret (%d bytes)", len(s))
		}
		if strings.Contains(logs, s) {
			a.t.Errorf("the log contains a secret (%d bytes)", len(s))
		}
	}
}

func seed(t *testing.T, e env, n int) {
	t.Helper()
	cfg, err := atlas.FromEnv(func(k string) (string, bool) { v, ok := e[k]; return v, ok }, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := atlas.Seed(testCtx(t), cfg, n); err != nil {
		t.Fatal(err)
	}
}

func samePatient(t *testing.T, got atlas.Patient, want atlas.Patient) {
	t.Helper()
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(want)
	if !bytes.Equal(g, w) {
		t.Errorf("patient = %s, want %s", g, w)
	}
}

func TestLoginAndPatients(t *testing.T) {
	d := newAppDB(t)
	e := env{atlas.KeyDatabaseURL: d.url, atlas.KeyJWTSecret: secretText(t), atlas.KeyEncryptionKey: newKey(t)}
	seed(t, e, 5)
	a := startApp(t, e)

	tok := a.login()
	a.demoPatients(tok, 5, "")
	if code, _, _ := a.patient(tok, 6); code != http.StatusNotFound {
		t.Errorf("GET /patients/6: %d, want 404", code)
	}
	if code, _ := a.do("GET", "/patients/abc", tok, nil); code != http.StatusNotFound {
		t.Errorf("GET /patients/abc: %d, want 404", code)
	}

	// Refused credentials and tokens.
	for _, cred := range []map[string]string{
		{"username": "demo", "password": "wrong"},
		{"username": "root", "password": atlas.DefaultDemoPassword},
		{"username": "demo", "password": ""},
	} {
		if code, _ := a.do("POST", "/login", "", cred); code != http.StatusUnauthorized {
			t.Errorf("login %v: %d, want 401", cred, code)
		}
	}
	if code, _ := a.do("GET", "/patients/1", "", nil); code != http.StatusUnauthorized {
		t.Errorf("no token: %d, want 401", code)
	}
	other, _ := atlas.IssueToken([]byte(secretText(t)), "demo", time.Now())
	expired, _ := atlas.IssueToken([]byte(e[atlas.KeyJWTSecret]), "demo", time.Now().Add(-time.Hour))
	hs256, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{Subject: "demo", ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Minute))}).SignedString([]byte(e[atlas.KeyJWTSecret]))
	noExp, _ := jwt.NewWithClaims(jwt.SigningMethodHS512, jwt.RegisteredClaims{Subject: "demo"}).SignedString([]byte(e[atlas.KeyJWTSecret]))
	for name, bad := range map[string]string{"other secret": other, "expired": expired, "HS256": hs256, "no exp": noExp, "garbage": "x.y.z", "tampered": tamper(tok)} {
		if code, _, _ := a.patient(bad, 1); code != http.StatusUnauthorized {
			t.Errorf("%s token: %d, want 401", name, code)
		}
	}

	// The PII is stored encrypted, in the nonce||ciphertext+tag layout.
	c := testkit.Cluster(t)
	conn, err := c.Connect(testCtx(t), d.db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var email, ssn string
	if err := conn.QueryRow(testCtx(t), "SELECT email, ssn FROM patients WHERE id = 1").Scan(&email, &ssn); err != nil {
		t.Fatal(err)
	}
	want := atlas.DemoPatient(1)
	raw, err := base64.StdEncoding.DecodeString(email)
	if err != nil || len(raw) != atlas.NonceSize+len(*want.Email)+16 {
		t.Errorf("stored email is not base64(nonce||ciphertext||tag): %d bytes, %v", len(raw), err)
	}
	if strings.Contains(email+ssn, *want.Email) || strings.Contains(email+ssn, *want.SSN) {
		t.Error("PII stored in plaintext")
	}

	a.noSecrets(e[atlas.KeyJWTSecret], e[atlas.KeyEncryptionKey], d.password, email, ssn)
}

func TestDemoPasswordFromEnvironment(t *testing.T) {
	d := newAppDB(t)
	t.Setenv(atlas.DemoPasswordEnv, "s3cret-demo")
	a := startApp(t, env{atlas.KeyDatabaseURL: d.url, atlas.KeyJWTSecret: secretText(t), atlas.KeyEncryptionKey: newKey(t)})
	if code, _ := a.do("POST", "/login", "", map[string]string{"username": "demo", "password": atlas.DefaultDemoPassword}); code != http.StatusUnauthorized {
		t.Errorf("default password with %s set: %d, want 401", atlas.DemoPasswordEnv, code)
	}
	if code, _ := a.do("POST", "/login", "", map[string]string{"username": "demo", "password": "s3cret-demo"}); code != http.StatusOK {
		t.Errorf("password from %s: %d, want 200", atlas.DemoPasswordEnv, code)
	}
}

func TestJWTSecretPrevious(t *testing.T) {
	d := newAppDB(t)
	oldSecret, newSecret, key := secretText(t), secretText(t), newKey(t)
	before := env{atlas.KeyDatabaseURL: d.url, atlas.KeyJWTSecret: oldSecret, atlas.KeyEncryptionKey: key}
	seed(t, before, 5)
	a := startApp(t, before)
	oldTok := a.login()

	// Rotated with the grace period: the old token still works.
	b := startApp(t, env{atlas.KeyDatabaseURL: d.url, atlas.KeyJWTSecret: newSecret, atlas.KeyJWTSecretPrevious: oldSecret, atlas.KeyEncryptionKey: key})
	if code, p, body := b.patient(oldTok, 1); code != http.StatusOK {
		t.Fatalf("old token with JWT_SECRET_PREVIOUS: %d %s", code, body)
	} else {
		samePatient(t, p, atlas.DemoPatient(1))
	}
	newTok := b.login()
	if code, _, body := b.patient(newTok, 2); code != http.StatusOK {
		t.Fatalf("new token: %d %s", code, body)
	}
	// New tokens are signed with the new secret only.
	if _, err := atlas.VerifyToken([][]byte{[]byte(oldSecret)}, newTok); err == nil {
		t.Error("a new token verifies with the previous secret")
	}

	// Grace period over (JWT_SECRET_PREVIOUS removed, or empty): the old token is refused.
	for _, e := range []env{
		{atlas.KeyDatabaseURL: d.url, atlas.KeyJWTSecret: newSecret, atlas.KeyEncryptionKey: key},
		{atlas.KeyDatabaseURL: d.url, atlas.KeyJWTSecret: newSecret, atlas.KeyJWTSecretPrevious: "", atlas.KeyEncryptionKey: key},
	} {
		c := startApp(t, e)
		if code, _, _ := c.patient(oldTok, 1); code != http.StatusUnauthorized {
			t.Errorf("old token without JWT_SECRET_PREVIOUS: %d, want 401", code)
		}
		if code, _, _ := c.patient(newTok, 1); code != http.StatusOK {
			t.Errorf("new token: %d, want 200", code)
		}
		c.noSecrets(oldSecret, newSecret, key, d.password)
	}
	a.noSecrets(oldSecret, newSecret, key, d.password)
	b.noSecrets(oldSecret, newSecret, key, d.password)
}

func TestEncryptionKeyPrevious(t *testing.T) {
	d := newAppDB(t)
	jwtSecret, oldKey, newKey_ := secretText(t), newKey(t), newKey(t)
	seed(t, env{atlas.KeyDatabaseURL: d.url, atlas.KeyJWTSecret: jwtSecret, atlas.KeyEncryptionKey: oldKey}, 5)

	c := testkit.Cluster(t)
	conn, err := c.Connect(testCtx(t), d.db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var ciphertexts []string
	rows, err := conn.Query(testCtx(t), "SELECT email FROM patients UNION ALL SELECT ssn FROM patients")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		ciphertexts = append(ciphertexts, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}

	// New key with the old one as previous: old rows read back, and a
	// row written under the new key too; NULLs stay null.
	rotated := env{atlas.KeyDatabaseURL: d.url, atlas.KeyJWTSecret: jwtSecret, atlas.KeyEncryptionKey: newKey_, atlas.KeyEncryptionKeyPrevious: oldKey}
	newKeyBytes, _ := base64.StdEncoding.DecodeString(newKey_)
	fresh := atlas.Patient{ID: 6, Name: "New Patient", Email: ptr("new@example.com")}
	if err := atlas.InsertPatient(testCtx(t), conn, newKeyBytes, fresh); err != nil {
		t.Fatal(err)
	}
	a := startApp(t, rotated)
	tok := a.login()
	a.demoPatients(tok, 5, " with ENCRYPTION_KEY_PREVIOUS")
	if code, p, body := a.patient(tok, 6); code != http.StatusOK {
		t.Fatalf("GET /patients/6: %d %s", code, body)
	} else {
		samePatient(t, p, fresh)
	}

	// New key alone: old rows do not open → generic 500; new row fine.
	b := startApp(t, env{atlas.KeyDatabaseURL: d.url, atlas.KeyJWTSecret: jwtSecret, atlas.KeyEncryptionKey: newKey_})
	tok = b.login()
	code, _, body := b.patient(tok, 1)
	if code != http.StatusInternalServerError {
		t.Fatalf("old row without ENCRYPTION_KEY_PREVIOUS: %d %s, want 500", code, body)
	}
	if strings.TrimSpace(string(body)) != `{"error":"internal error"}` {
		t.Errorf("500 body = %s, want the generic error", body)
	}
	if !strings.Contains(b.log.String(), "does not decrypt") {
		t.Errorf("log does not say why: %s", b.log.String())
	}
	if code, _, _ := b.patient(tok, 6); code != http.StatusOK {
		t.Errorf("new row: %d, want 200", code)
	}

	// Old key alone (e.g. after a revert): the new row does not open.
	r := startApp(t, env{atlas.KeyDatabaseURL: d.url, atlas.KeyJWTSecret: jwtSecret, atlas.KeyEncryptionKey: oldKey})
	if code, _, _ := r.patient(r.login(), 6); code != http.StatusInternalServerError {
		t.Errorf("new row under old key only: %d, want 500", code)
	}

	secrets := append([]string{jwtSecret, oldKey, newKey_, d.password}, ciphertexts...)
	a.noSecrets(secrets...)
	b.noSecrets(secrets...)
	r.noSecrets(secrets...)
}

func ptr(s string) *string { return &s }

func TestHealth(t *testing.T) {
	d := newAppDB(t)
	e := env{atlas.KeyDatabaseURL: d.url, atlas.KeyJWTSecret: secretText(t), atlas.KeyEncryptionKey: newKey(t)}
	seed(t, e, 1)
	a := startApp(t, e)
	code, body := a.do("GET", "/health", "", nil)
	if code != http.StatusOK || strings.TrimSpace(string(body)) != `{"status":"ok"}` {
		t.Fatalf("/health: %d %s", code, body)
	}

	// The role's password changes under the running app (as rekey's
	// apply step does before the .env is published): health goes 503.
	c := testkit.Cluster(t)
	admin, err := c.Connect(testCtx(t), "")
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	newPassword := secretText(t)
	if err := postgres.SetPassword(testCtx(t), admin, d.role, []byte(newPassword)); err != nil {
		t.Fatal(err)
	}
	code, body = a.do("GET", "/health", "", nil)
	if code != http.StatusServiceUnavailable || strings.TrimSpace(string(body)) != `{"status":"unavailable"}` {
		t.Fatalf("/health after password change: %d %s, want 503", code, body)
	}
	if code, _, _ := a.patient(a.login(), 1); code != http.StatusServiceUnavailable {
		t.Errorf("/patients/1 after password change: %d, want 503", code)
	}

	// Restarted with the new password: healthy again.
	e[atlas.KeyDatabaseURL] = c.ConnString(d.role, newPassword, d.db)
	b := startApp(t, e)
	if code, body := b.do("GET", "/health", "", nil); code != http.StatusOK {
		t.Fatalf("/health after restart: %d %s", code, body)
	}
	a.noSecrets(d.password, newPassword)
	b.noSecrets(d.password, newPassword)
}

func TestConfigErrors(t *testing.T) {
	good := env{
		atlas.KeyDatabaseURL:   "postgres://u:pw-Zq9sekrit-1@127.0.0.1:5432/db",
		atlas.KeyJWTSecret:     "jwt-Zq9sekrit-2" + strings.Repeat("j", 64),
		atlas.KeyEncryptionKey: base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32)),
	}
	with := func(k, v string) env {
		e := env{}
		for kk, vv := range good {
			e[kk] = vv
		}
		if v == "\x00unset" {
			delete(e, k)
		} else {
			e[k] = v
		}
		return e
	}
	if _, err := atlas.LoadEnvFile(writeEnv(t, good)); err != nil {
		t.Fatalf("good env: %v", err)
	}
	for name, tc := range map[string]struct {
		e    env
		want string
	}{
		"no DATABASE_URL":   {with(atlas.KeyDatabaseURL, "\x00unset"), "DATABASE_URL is not set"},
		"bad DATABASE_URL":  {with(atlas.KeyDatabaseURL, "mysql://u:pw-Zq9sekrit-1@h/db"), "DATABASE_URL"},
		"no JWT_SECRET":     {with(atlas.KeyJWTSecret, ""), "JWT_SECRET is not set"},
		"short JWT_SECRET":  {with(atlas.KeyJWTSecret, "jwt-Zq9sekrit-2"), "JWT_SECRET must be at least 64 bytes"},
		"no ENCRYPTION_KEY": {with(atlas.KeyEncryptionKey, "\x00unset"), "ENCRYPTION_KEY is not set"},
		"short key":         {with(atlas.KeyEncryptionKey, base64.StdEncoding.EncodeToString([]byte("key-Zq9sekrit-3"))), "ENCRYPTION_KEY must decode to 32 bytes"},
		"not base64":        {with(atlas.KeyEncryptionKey, "key-Zq9sekrit-3!!"), "ENCRYPTION_KEY is not valid base64"},
		"bad previous key":  {with(atlas.KeyEncryptionKeyPrevious, "key-Zq9sekrit-3!!"), "ENCRYPTION_KEY_PREVIOUS is not valid base64"},
	} {
		_, err := atlas.LoadEnvFile(writeEnv(t, tc.e))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", name, err, tc.want)
			continue
		}
		if strings.Contains(err.Error(), "Zq9sekrit") {
			t.Errorf("%s: error shows a value: %v", name, err)
		}
	}
	cfg, _ := atlas.LoadEnvFile(writeEnv(t, good))
	if s := fmt.Sprintf("%v %+v %#v %s", cfg, cfg, cfg, cfg); strings.Contains(s, "Zq9sekrit") || strings.Contains(s, good[atlas.KeyEncryptionKey]) {
		t.Errorf("Config prints a secret: %s", s)
	}
}

func TestCrypto(t *testing.T) {
	k1, k2 := randomBytes(t, 32), randomBytes(t, 32)
	ct, err := atlas.Encrypt(k1, "123-45-6789")
	if err != nil {
		t.Fatal(err)
	}
	ct2, _ := atlas.Encrypt(k1, "123-45-6789")
	if ct == ct2 {
		t.Error("two encryptions are equal: nonce reused")
	}
	if pt, i, err := atlas.Decrypt([][]byte{k2, k1}, ct); err != nil || pt != "123-45-6789" || i != 1 {
		t.Errorf("Decrypt = %q, %d, %v", pt, i, err)
	}
	if _, _, err := atlas.Decrypt([][]byte{k2, nil}, ct); err == nil {
		t.Error("decrypts under the wrong key")
	}
	for _, bad := range []string{"", "!!", base64.StdEncoding.EncodeToString(make([]byte, 20))} {
		if _, _, err := atlas.Decrypt([][]byte{k1}, bad); err == nil {
			t.Errorf("Decrypt(%q) succeeded", bad)
		}
	}
	if _, err := atlas.Encrypt(k1[:16], "x"); err == nil {
		t.Error("Encrypt accepts a 16-byte key")
	}
}

// TestRun drives run(): --seed, then serving on a real listener, then a
// clean shutdown when the context ends (what SIGTERM does in main).
func TestRun(t *testing.T) {
	d := newAppDB(t)
	e := env{atlas.KeyDatabaseURL: d.url, atlas.KeyJWTSecret: secretText(t), atlas.KeyEncryptionKey: newKey(t)}
	path := writeEnv(t, e)
	var out bytes.Buffer
	if code := run(testCtx(t), []string{"--env-file", path, "--seed", "5"}, &out); code != 0 {
		t.Fatalf("--seed: exit %d: %s", code, out.String())
	}
	// Idempotent.
	if code := run(testCtx(t), []string{"--env-file", path, "--seed", "5"}, &out); code != 0 {
		t.Fatalf("--seed again: exit %d: %s", code, out.String())
	}
	if code := run(testCtx(t), []string{"--env-file", filepath.Join(t.TempDir(), "missing")}, &out); code != 1 {
		t.Errorf("missing env file: exit %d, want 1", code)
	}
	if code := run(testCtx(t), []string{"--bogus"}, io.Discard); code != 2 {
		t.Errorf("bad flag: exit %d, want 2", code)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := atlas.LoadEnvFile(path)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(testCtx(t))
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, ln, slog.New(slog.NewTextHandler(logs, nil))) }()

	base := "http://" + ln.Addr().String()
	resp, err := http.Post(base+"/login", "application/json", strings.NewReader(`{"username":"demo","password":"demo-password"}`))
	if err != nil {
		t.Fatal(err)
	}
	var tok struct{ Token string }
	json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	req, _ := http.NewRequest("GET", base+"/patients/5", nil)
	req.Header.Set("Authorization", "Bearer "+tok.Token)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var p atlas.Patient
	json.NewDecoder(resp.Body).Decode(&p)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET /patients/5: %d", resp.StatusCode)
	}
	samePatient(t, p, atlas.DemoPatient(5))

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("serve did not return after cancel")
	}
	if _, err := http.Get(base + "/health"); err == nil {
		t.Error("still serving after shutdown")
	}
	all := out.String() + logs.String()
	for _, s := range []string{d.password, e[atlas.KeyJWTSecret], e[atlas.KeyEncryptionKey]} {
		if strings.Contains(all, s) {
			t.Error("a secret reached the log")
		}
	}
	if !strings.Contains(logs.String(), "listening on "+ln.Addr().String()) {
		t.Errorf("no listening line: %s", logs.String())
	}
}

// tamper changes the first character of tok's signature (replacing its
// last ones could change nothing: the last base64url character carries
// padding bits, and "AA" may be what was there).
func tamper(tok string) string {
	i := strings.LastIndexByte(tok, '.') + 1
	c := byte('A')
	if tok[i] == 'A' {
		c = 'B'
	}
	return tok[:i] + string(c) + tok[i+1:]
}
