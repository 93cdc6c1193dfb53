package main

// End to end: `rekey incident open` (the runbook's "Emergency Rotation
// (Secret Exposed)") with the real rekey binary, the reference app
// (examples/atlas-app) run and restarted as a service by rekey, a real
// PostgreSQL cluster, a real SMTP server in-process (go-smtp: STARTTLS,
// AUTH PLAIN) and a webhook receiver that checks the signature
// (obReceiver, outbox_test.go). The project is e2eSetup's (e2e_test.go)
// plus two notify channels routed for incident.opened.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/demo/atlasdemo"
	"github.com/rekeyhq/rekey/internal/pgtest"
	"github.com/rekeyhq/rekey/internal/testkit"
)

// incMailbox is a real SMTP server (go-smtp) that offers STARTTLS and AUTH
// PLAIN (after TLS only), checks the password against the project's
// current SMTP_PASSWORD, and counts the mails per idempotency key. It can
// be stopped and started again on the same address (a receiver down).
type incMailbox struct {
	mu    sync.Mutex
	pass  string
	addr  string
	cert  tls.Certificate
	srv   *smtp.Server
	byKey map[string]int
	mails []incMail
}

type incMail struct {
	to   []string
	data string
	tls  bool
}

func (b *incMailbox) NewSession(c *smtp.Conn) (smtp.Session, error) {
	return &incMailSession{box: b, conn: c}, nil
}

type incMailSession struct {
	box    *incMailbox
	conn   *smtp.Conn
	authed bool
	cur    incMail
}

func (s *incMailSession) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *incMailSession) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		s.box.mu.Lock()
		defer s.box.mu.Unlock()
		if _, isTLS := s.conn.TLSConnectionState(); !isTLS || user != "rekey" || pass != s.box.pass {
			return errors.New("invalid credentials")
		}
		s.authed = true
		return nil
	}), nil
}

func (s *incMailSession) Mail(string, *smtp.MailOptions) error {
	if !s.authed {
		return smtp.ErrAuthRequired
	}
	_, isTLS := s.conn.TLSConnectionState()
	s.cur = incMail{tls: isTLS}
	return nil
}

func (s *incMailSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.cur.to = append(s.cur.to, to)
	return nil
}

var incMailKey = regexp.MustCompile(`(?m)^X-Rekey-Idempotency-Key: (\S+)\r?$`)

func (s *incMailSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.cur.data = string(b)
	s.box.mu.Lock()
	defer s.box.mu.Unlock()
	s.box.mails = append(s.box.mails, s.cur)
	if m := incMailKey.FindStringSubmatch(s.cur.data); m != nil {
		s.box.byKey[m[1]]++
	}
	return nil
}

func (s *incMailSession) Reset()        { s.cur = incMail{} }
func (s *incMailSession) Logout() error { return nil }

// newIncMailbox starts a mailbox on 127.0.0.1 and writes the PEM of its
// self-signed certificate to caFile (the channel's ca_file).
func newIncMailbox(t *testing.T, caFile string) *incMailbox {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "rekey incident e2e SMTP"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	kd, _ := x509.MarshalECPrivateKey(k)
	b := &incMailbox{byKey: map[string]int{}, addr: "127.0.0.1:0"}
	if b.cert, err = tls.X509KeyPair(certPEM, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd})); err != nil {
		t.Fatal(err)
	}
	testkit.WriteFile(t, caFile, string(certPEM), 0o644)
	b.start(t)
	t.Cleanup(b.stop)
	return b
}

// start serves on b.addr (the same address again after stop).
func (b *incMailbox) start(t *testing.T) {
	t.Helper()
	s := smtp.NewServer(b)
	s.Domain = "localhost"
	s.ErrorLog = log.New(io.Discard, "", 0)
	s.ReadTimeout, s.WriteTimeout = 10*time.Second, 10*time.Second
	s.TLSConfig = &tls.Config{Certificates: []tls.Certificate{b.cert}}
	l, err := net.Listen("tcp", b.addr)
	if err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	b.addr, b.srv = l.Addr().String(), s
	b.mu.Unlock()
	go func() { _ = s.Serve(l) }()
}

func (b *incMailbox) stop() {
	b.mu.Lock()
	s := b.srv
	b.srv = nil
	b.mu.Unlock()
	if s != nil {
		_ = s.Close()
	}
}

// incE2E is an e2eProject with its receivers.
type incE2E struct {
	*e2eProject
	hook *obReceiver
	box  *incMailbox
}

// incE2ESetup is e2eSetup (the app provisioned, started, `rekey init`,
// rekey.yaml completed) with two more managed secrets (the webhook's
// signing secret, the SMTP password), an http check presenting
// {{ JWT_SECRET | jwt512 }} to the app and a notify: section sending incident.opened to
// the security contact: the webhook and the mailbox.
func incE2ESetup(t *testing.T, c *pgtest.Cluster, outputs *[]string) *incE2E {
	t.Helper()
	key := atlasdemo.Random(32, base64.StdEncoding)
	app := e2eApp(t)
	db, err := atlasdemo.Provision(e2eCtx(t), atlasdemo.ProvisionOptions{SuperURL: c.SuperConnString("postgres"), Name: testkit.Unique("atlas_inc"), Patients: e2ePatients, Key: key, App: app})
	if err != nil {
		t.Fatal(err)
	}
	port, err := atlasdemo.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	p := &e2eProject{t: t, c: c, bin: ctRekeyBin(t), app: app, dir: t.TempDir(), db: db, base: "http://127.0.0.1:" + strconv.Itoa(port), pidfile: "app.pid", outputs: outputs, values: map[string]bool{}}
	p.env = testkit.CleanEnv("REKEY_MASTER_KEY="+ctRandB64(32, base64.StdEncoding), "XDG_CONFIG_HOME="+t.TempDir(), "REKEY_ACTOR=incident-e2e",
		atlasdemo.ParentPIDEnv+"="+strconv.Itoa(os.Getpid()))
	env := atlasdemo.NewEnv(db, key, port)
	env.Values["WEBHOOK_SIGNING_SECRET"] = atlasdemo.Random(32, base64.StdEncoding)
	env.Values["SMTP_PASSWORD"] = atlasdemo.Random(24, base64.RawURLEncoding)
	env.Order = append(env.Order, "", "WEBHOOK_SIGNING_SECRET", "SMTP_PASSWORD")
	testkit.WriteFile(t, filepath.Join(p.dir, ".env"), env.Text(), 0o600)
	p.remember()
	p.values[env.Values["WEBHOOK_SIGNING_SECRET"]], p.values[env.Values["SMTP_PASSWORD"]] = true, true
	listen := strings.TrimPrefix(p.base, "http://")
	p.mustBin(p.app, "start", "--env-file", ".env", "--listen", listen, "--pidfile", p.pidfile)
	t.Cleanup(func() { p.runBin(p.app, nil, "stop", "--pidfile", p.pidfile) })
	p.must("init", "--env-file", ".env")

	// The proof check asks the app itself for a patient with a token of
	// its own algorithm (HS512: jwt512) signed with JWT_SECRET.
	cfg := filepath.Join(p.dir, "rekey.yaml")
	if err := atlasdemo.Configure(cfg, atlasdemo.RekeyOptions{
		App: p.app, Listen: listen, Pidfile: p.pidfile, Sessions: "immediate", Patients: e2ePatients, DecryptSample: true,
		ExtraChecks: "me:\n  http:\n    url: " + p.base + "/patients/1\n    headers: {Authorization: \"Bearer {{ JWT_SECRET | jwt512 }}\"}\n",
	}); err != nil {
		t.Fatal(err)
	}
	x := &incE2E{e2eProject: p, hook: newObReceiver(t), box: newIncMailbox(t, filepath.Join(p.dir, "smtp-ca.pem"))}
	notify := "notify:\n  channels:\n" +
		"    security-hook: {type: webhook, url: \"" + x.hook.srv.URL + "/events\", secret: WEBHOOK_SIGNING_SECRET, timeout: 5s}\n" +
		"    security-mail:\n      type: email\n      smtp: " + x.box.addr + "\n      username: rekey\n      password_secret: SMTP_PASSWORD\n" +
		"      from: rekey@atlas.example\n      to: [security@atlas.example, dba@atlas.example]\n      ca_file: ./smtp-ca.pem\n" +
		"  contacts:\n    security: [security-hook, security-mail]\n" +
		"  events:\n    incident.opened: [security]\n"
	testkit.WriteFile(t, cfg, testkit.ReadFile(t, cfg)+notify, 0o644)
	p.must("config", "trust")
	p.must("verify")
	x.hook.set(false, x.secret("WEBHOOK_SIGNING_SECRET"))
	x.box.mu.Lock()
	x.box.pass = x.secret("SMTP_PASSWORD")
	x.box.mu.Unlock()
	return x
}

// secret is the current value of name (rekey get prints it by design: its
// output is left out of the leak check's outputs).
func (x *incE2E) secret(name string) string {
	x.t.Helper()
	r := x.run(nil, "get", name, "-n")
	*x.outputs = (*x.outputs)[:len(*x.outputs)-2]
	if r.Code != 0 {
		x.t.Fatalf("get %s: %v", name, r)
	}
	return r.Stdout
}

// open runs `incident open` for JWT_SECRET and DATABASE_PASSWORD and
// checks what must hold whether or not the receivers are up: rotated, the
// app healthy on the new values, the old token and the old password
// refused, the proofs dead, every action of the timeline ok.
func (x *incE2E) open(before map[string]string, oldTok string, extra ...string) (incidentOpenOut, map[string]string) {
	t := x.t
	t.Helper()
	r := x.run(nil, append([]string{"incident", "open", "--secret", "JWT_SECRET", "--secret", "DATABASE_PASSWORD", "--reason", "leaked in a CI log", "--json"}, extra...)...)
	after := x.remember()
	x.rememberVersions()
	if r.Code != 0 {
		t.Fatalf("incident open: %v", r)
	}
	var open incidentOpenOut
	if err := json.Unmarshal([]byte(r.Stdout), &open); err != nil {
		t.Fatalf("%v\n%s", err, r.Stdout)
	}
	inc := open.Incident
	if !strings.HasPrefix(inc.ID, "INC-") || inc.State != "open" || len(inc.Secrets) != 2 {
		t.Fatalf("incident: %+v", inc)
	}
	for _, s := range inc.Secrets {
		if s.Replacement <= s.ExposedVersion || s.ReplacementFingerprint == s.ExposedFingerprint {
			t.Errorf("%s not replaced: %+v", s.Name, s)
		}
	}
	for _, k := range []string{"JWT_SECRET", "DATABASE_PASSWORD", "DATABASE_URL"} {
		if after[k] == "" || after[k] == before[k] {
			t.Errorf("%s was not rotated in the .env", k)
		}
	}
	for _, k := range []string{"ENCRYPTION_KEY", "ANTHROPIC_API_KEY"} {
		if after[k] != before[k] {
			t.Errorf("%s, not exposed, changed", k)
		}
	}
	verdicts := map[string]string{}
	for _, pr := range open.Proofs {
		verdicts[pr.Secret+" "+pr.Method] = pr.Verdict
	}
	if verdicts["JWT_SECRET check me"] != "dead" || verdicts["DATABASE_PASSWORD postgres login"] != "dead" {
		t.Errorf("proofs: %+v", open.Proofs)
	}
	actions := map[string]string{}
	for _, ev := range inc.Timeline {
		actions[ev.Action+" "+ev.Secret] = ev.Outcome
	}
	wants := []string{"rotate JWT_SECRET", "rotate DATABASE_PASSWORD", "restart ", "verify ", "prove-dead JWT_SECRET", "prove-dead DATABASE_PASSWORD", "access-review ", "scan ", "notify "}
	if slices.Contains(extra, "--stop") {
		wants = append(wants, "stop ")
	} else if _, ok := actions["stop "]; ok {
		t.Errorf("timeline: a stop without --stop: %+v", inc.Timeline)
	}
	for _, want := range wants {
		if actions[want] != rekey.OutcomeOK {
			t.Errorf("timeline: %q is %q, want ok: %+v", want, actions[want], inc.Timeline)
		}
	}

	// The app, restarted by rekey, is healthy on the new values; the old
	// token and the old password are refused.
	if code := x.health(); code != http.StatusOK {
		t.Errorf("/health after the incident: %d", code)
	}
	if code, body := x.get(x.login(), 1); code != http.StatusOK {
		t.Errorf("a fresh token after the incident: %d %s", code, body)
	}
	if code, _ := x.get(oldTok, 1); code != http.StatusUnauthorized {
		t.Errorf("a token from before the incident: %d, want 401", code)
	}
	if testkit.LogsIn(t, before["DATABASE_URL"]) {
		t.Error("the server still accepts the exposed database password")
	}
	if !testkit.LogsIn(t, after["DATABASE_URL"]) {
		t.Error("the server refuses the new database password")
	}
	x.must("verify")
	return open, after
}

// delivered checks that incident id's incident.opened reached both
// receivers, each idempotency key exactly once, by STARTTLS for the mail,
// and that no request nor mail holds any managed value.
func (x *incE2E) delivered(id string) {
	t := x.t
	t.Helper()
	if ev := x.hook.events(); len(ev) != 1 || ev[0] != rekey.EventIncidentOpened {
		t.Errorf("webhook received %v, want one incident.opened (incident open delivers what it enqueued at its end, as rotate does: flushAfter)", ev)
	}
	x.hook.noDuplicates(t)
	x.hook.mu.Lock()
	for _, m := range x.hook.msgs {
		names := []string{}
		for _, s := range m.Secrets {
			names = append(names, s.Name)
			if s.Fingerprint == "" {
				t.Errorf("webhook message: %s without a fingerprint", s.Name)
			}
		}
		if m.IncidentID != id || strings.Join(names, ",") != "JWT_SECRET,DATABASE_PASSWORD" || !strings.Contains(m.Command, "rekey incident status "+id) {
			t.Errorf("webhook message = %+v", m)
		}
	}
	raw := append([]string(nil), x.hook.raw...)
	x.hook.mu.Unlock()

	x.box.mu.Lock()
	if len(x.box.mails) != 1 || len(x.box.byKey) != 1 {
		t.Errorf("mailbox: %d mails, keys %v; want one", len(x.box.mails), x.box.byKey)
	}
	for k, n := range x.box.byKey {
		if n != 1 {
			t.Errorf("mail key %s received %d times", k, n)
		}
	}
	for _, m := range x.box.mails {
		if !m.tls || strings.Join(m.to, ",") != "security@atlas.example,dba@atlas.example" {
			t.Errorf("mail: tls %v, to %v", m.tls, m.to)
		}
		for _, want := range []string{"Incident " + id, "JWT_SECRET", "DATABASE_PASSWORD", "rekey incident status " + id} {
			if !strings.Contains(m.data, want) {
				t.Errorf("mail lacks %q:\n%s", want, m.data)
			}
		}
		raw = append(raw, m.data)
	}
	x.box.mu.Unlock()
	for v := range x.values {
		if v == "" {
			continue
		}
		fs := []string{v}
		if !strings.HasPrefix(v, "postgres://") {
			fs = forms(v)
		}
		for _, f := range fs {
			for _, r := range raw {
				if strings.Contains(r, f) {
					t.Fatalf("a notification holds a managed value (%d bytes):\n%s", len(v), r)
				}
			}
		}
	}
}

// TestIncidentE2E: `rekey incident open --secret JWT_SECRET --secret
// DATABASE_PASSWORD` against the reference app and PostgreSQL rotates both,
// rekey restarts the app, which is healthy: a fresh token works, an old
// one gets 401, the server refuses the old password; the proofs are dead;
// incident.opened reaches the webhook (signature valid) and the mailbox
// (STARTTLS, AUTH) once each, without any value; the report's timeline
// matches testdata/incident_report.md.golden (times and IDs normalised).
// With both receivers down, the incident completes the same, the
// deliveries are recorded failed, and `rekey notify flush` (twice) once
// they are back delivers each exactly once.
func TestIncidentE2E(t *testing.T) {
	c := startCluster(t)
	var outputs []string
	var projects []*e2eProject

	t.Run("receivers-up", func(t *testing.T) {
		x := incE2ESetup(t, c, &outputs)
		projects = append(projects, x.e2eProject)
		before, oldTok := x.dotenv(), x.login()
		open, _ := x.open(before, oldTok)
		x.delivered(open.Incident.ID)
		if out := x.must("notify", "status"); out != "no notification waiting\n" {
			t.Errorf("notify status after the incident: %q", out)
		}
		report := x.must("incident", "report", open.Incident.ID)
		incGolden(t, "incident_report.md.golden", incTimeline(t, report))
	})

	// The outbox's delivery does not depend on the server's version: a
	// repeat on another major (testkit.Repeating) runs the incident itself
	// only.
	receiversDown := func(t *testing.T) {
		x := incE2ESetup(t, c, &outputs)
		projects = append(projects, x.e2eProject)
		x.hook.set(true)
		x.box.stop()
		before, oldTok := x.dotenv(), x.login()
		open, _ := x.open(before, oldTok, "--stop") // the app stopped first, started by the rotation's restart
		id := open.Incident.ID
		var items []outboxItemJSON
		if err := json.Unmarshal([]byte(x.must("notify", "status", "--json")), &items); err != nil {
			t.Fatal(err)
		}
		if len(items) != 2 {
			t.Fatalf("outbox after the incident with the receivers down: %+v", items)
		}
		for _, it := range items {
			if it.Event != rekey.EventIncidentOpened || it.State != "failed" || it.Attempts != 1 || it.LastError == "" || it.NextAttempt == nil {
				t.Errorf("outbox item %+v: want failed after one attempt at the end of incident open", it)
			}
		}
		x.box.mu.Lock()
		mails := len(x.box.mails)
		x.box.mu.Unlock()
		if ev := x.hook.events(); len(ev) != 0 || mails != 0 {
			t.Fatalf("delivered while down: %v, %d mails", ev, mails)
		}

		// Back up; flush once the backoff has passed, twice.
		x.hook.set(false)
		x.box.start(t)
		later := []string{"REKEY_TEST_NOW=" + time.Now().Add(10*time.Minute).UTC().Format(time.RFC3339)}
		for i, want := range []string{"2 delivered, 0 failed, 0 pending", "0 delivered, 0 failed, 0 pending"} {
			r := x.run(later, "notify", "flush")
			if r.Code != 0 || !strings.Contains(r.Stdout, want) {
				t.Errorf("flush %d: %v, want %q", i+1, r, want)
			}
		}
		x.delivered(id)
		if out := x.must("notify", "status"); out != "no notification waiting\n" {
			t.Errorf("notify status after the flush: %q", out)
		}
		if log := x.must("audit"); !strings.Contains(log, "notify.deliver") || !strings.Contains(log, "incident.open") {
			t.Errorf("audit lacks the incident or the deliveries:\n%s", log)
		}
		x.deferredReencryption()
	}
	if !testkit.Repeating() {
		t.Run("receivers-down", receiversDown)
	}
	noLeaks(t, c, projects, outputs)
}

// incTimeline is the report's timeline section, normalised: times,
// incident and rotation IDs, fingerprints, idempotency keys, durations,
// ports and paths replaced by placeholders.
func incTimeline(t *testing.T, report string) string {
	t.Helper()
	i := strings.Index(report, "## 🕒 Timeline")
	if i < 0 {
		t.Fatalf("no timeline in the report:\n%s", report)
	}
	sec := report[i:]
	if j := strings.Index(sec[1:], "\n## "); j >= 0 {
		sec = sec[:j+1]
	}
	sec = strings.TrimSuffix(strings.TrimRight(sec, "\n"), "\n---")
	for _, r := range incNormal {
		sec = r.re.ReplaceAllString(sec, r.to)
	}
	return strings.TrimRight(sec, "\n") + "\n"
}

var incNormal = []struct {
	re *regexp.Regexp
	to string
}{
	{regexp.MustCompile(`\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})?`), "TIME"},
	{regexp.MustCompile(`\b\d{2}:\d{2}:\d{2}Z?\b`), "TIME"},
	{regexp.MustCompile(`\b\d{4}-\d{2}-\d{2}\b`), "DATE"},
	{regexp.MustCompile(`INC-\d{8}-[0-9a-f]+`), "INC-ID"},
	{regexp.MustCompile(`rekey-[0-9a-f]{32}`), "rekey-KEY"},
	{regexp.MustCompile(`fp:[0-9a-f]+`), "fp:FP"},
	{regexp.MustCompile(`\b(rot|rotation)[-_ ][0-9a-zA-Z-]{6,}`), "ROTATION"},
	{regexp.MustCompile(`\b\d+(\.\d+)?(ns|µs|ms|s|m)\b`), "DUR"},
	{regexp.MustCompile(`127\.0\.0\.1:\d+`), "127.0.0.1:PORT"},
	{regexp.MustCompile(`/tmp/\S*`), "PATH"},
	{regexp.MustCompile(`atlas_inc_\w+`), "atlas_inc_DB"},
}

// incGolden compares got with testdata/NAME (rewritten with -update).
func incGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to write it)", err)
	}
	if string(want) != got {
		t.Errorf("the report's timeline differs from %s (run with -update if intended):\n--- got\n%s--- want\n%s", path, got, want)
	}
}

// deferredReencryption opens an incident for ENCRYPTION_KEY with
// --no-reencrypt: the app runs on the new key at once and reads the rows
// under the exposed one as ENCRYPTION_KEY_PREVIOUS, the decrypt-sample
// check passes saying their re-encryption is pending, and the follow-up
// reencrypt:ENCRYPTION_KEY stays to do; `rekey reencrypt` then moves the
// rows, removes ENCRYPTION_KEY_PREVIOUS and marks the follow-up done.
func (x *incE2E) deferredReencryption() {
	t := x.t
	t.Helper()
	before := x.dotenv()
	r := x.run(nil, "incident", "open", "--secret", "ENCRYPTION_KEY", "--no-reencrypt", "--reason", "key file copied to a laptop", "--json")
	after := x.remember()
	x.rememberVersions()
	if r.Code != 0 {
		t.Fatalf("incident open ENCRYPTION_KEY --no-reencrypt: %v", r)
	}
	var open incidentOpenOut
	if err := json.Unmarshal([]byte(r.Stdout), &open); err != nil {
		t.Fatalf("%v\n%s", err, r.Stdout)
	}
	id := open.Incident.ID
	if after["ENCRYPTION_KEY"] == before["ENCRYPTION_KEY"] || after["ENCRYPTION_KEY_PREVIOUS"] != before["ENCRYPTION_KEY"] {
		t.Fatal("want the new ENCRYPTION_KEY published with the exposed one as ENCRYPTION_KEY_PREVIOUS")
	}
	if !strings.Contains(r.Stderr, "rekey reencrypt ENCRYPTION_KEY") {
		t.Errorf("incident open --no-reencrypt does not name the command that moves the rows:\n%s", r.Stderr)
	}
	followUp := func() bool {
		return followUpDone(t, x.must("incident", "status", id, "--json"), rekey.FollowUpReencrypt+"ENCRYPTION_KEY")
	}
	if followUp() {
		t.Error("reencrypt:ENCRYPTION_KEY done before the rows moved")
	}
	if out := x.must("verify"); !strings.Contains(out, "with the previous ENCRYPTION_KEY: their re-encryption is pending") {
		t.Errorf("verify while the rows are pending does not say so:\n%s", out)
	}
	x.must("reencrypt", "ENCRYPTION_KEY")
	if !followUp() {
		t.Error("rekey reencrypt did not mark reencrypt:ENCRYPTION_KEY done")
	}
	if _, ok := x.dotenv()["ENCRYPTION_KEY_PREVIOUS"]; ok {
		t.Error("ENCRYPTION_KEY_PREVIOUS still published after the re-encryption")
	}
	if out := x.must("verify"); strings.Contains(out, "pending") {
		t.Errorf("verify after the re-encryption:\n%s", out)
	}
}
