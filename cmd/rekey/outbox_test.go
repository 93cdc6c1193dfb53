package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/approval"
	"github.com/rekeyhq/rekey/internal/notify"
	"github.com/rekeyhq/rekey/internal/sqlite"
	"github.com/rekeyhq/rekey/seal"
)

// obReceiver is a real webhook receiver: it checks the signature under the
// secrets it knows, counts deliveries per idempotency key, keeps every
// request (body and headers) for the canary, and can be down (503).
type obReceiver struct {
	mu      sync.Mutex
	secrets [][]byte
	down    bool
	byKey   map[string]int
	msgs    []notify.Message
	raw     []string
	srv     *httptest.Server
}

func newObReceiver(t *testing.T) *obReceiver {
	r := &obReceiver{byKey: map[string]int{}}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		defer r.mu.Unlock()
		all := string(body)
		for k, v := range req.Header {
			all += "\n" + k + ": " + strings.Join(v, ",")
		}
		r.raw = append(r.raw, all)
		if r.down {
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		ok := false
		for _, s := range r.secrets {
			// The signed timestamp is the (fixed) test clock's: tolerance wide.
			if notify.Verify(s, req.Header.Get(notify.HeaderSignature), req.Header.Get(notify.HeaderTimestamp), body, 100*365*24*time.Hour) == nil {
				ok = true
			}
		}
		if !ok {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var m notify.Message
		if err := json.Unmarshal(body, &m); err != nil || m.IdempotencyKey != req.Header.Get(notify.HeaderIdempotencyKey) {
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		r.byKey[m.IdempotencyKey]++
		r.msgs = append(r.msgs, m)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *obReceiver) set(down bool, secrets ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.down = down
	for _, s := range secrets {
		r.secrets = append(r.secrets, []byte(s))
	}
}

// events returns the events received (each accepted delivery).
func (r *obReceiver) events() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, m := range r.msgs {
		out = append(out, m.Event)
	}
	return out
}

// noDuplicates fails when a key was delivered more than once.
func (r *obReceiver) noDuplicates(t *testing.T) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, n := range r.byKey {
		if n != 1 {
			t.Errorf("idempotency key %s delivered %d times", k, n)
		}
	}
}

// noValue fails when any request (body or header) holds one of values in
// any of its forms.
func (r *obReceiver) noValue(t *testing.T, values ...string) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, raw := range r.raw {
		for _, v := range values {
			for _, f := range forms(v) {
				if strings.Contains(raw, f) {
					t.Fatalf("a delivery holds a secret value:\n%s", raw)
				}
			}
		}
	}
}

// obProject is a project with JWT_SECRET and the webhook's signing secret,
// a webhook channel to rcv, approved.
func obProject(t *testing.T, rcv *obReceiver, now string, extra string) *inProject {
	t.Helper()
	p := &inProject{t: t, dir: t.TempDir(), env: map[string]string{
		"REKEY_MASTER_KEY": testMasterKey, "XDG_CONFIG_HOME": t.TempDir(), "XDG_STATE_HOME": t.TempDir(), "REKEY_ACTOR": "outbox-test",
	}}
	if now != "" {
		p.env["REKEY_TEST_NOW"] = now
	}
	p.init("JWT_SECRET=" + ctRandB64(48, base64.StdEncoding) + "\nWEBHOOK_SIGNING_SECRET=" + ctRandB64(32, base64.StdEncoding) + "\nPORT=8080\n")
	f, err := os.OpenFile(filepath.Join(p.dir, "rekey.yaml"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.WriteString(extra + "notify:\n  channels:\n    hook: {type: webhook, url: \"" + rcv.srv.URL + "/events\", secret: WEBHOOK_SIGNING_SECRET, timeout: 5s}\n")
	_ = f.Close()
	p.must("config", "trust")
	rcv.set(false, strings.TrimSpace(p.must("get", "WEBHOOK_SIGNING_SECRET")))
	return p
}

// allValues are every stored version's value of names (the canary).
func allValues(p *inProject, names ...string) []string {
	var out []string
	for _, n := range names {
		for v := 1; v <= 4; v++ {
			if s, _, code := p.run("get", n, "--version", strconv.Itoa(v)); code == 0 {
				out = append(out, strings.TrimSpace(s))
			}
		}
	}
	return out
}

// TestOutboxRolledBackNotified: a rotation whose check fails rolls back,
// records rotation.rolled_back in the outbox in the same transaction and
// delivers it at the end of the command, signed, without any value.
func TestOutboxRolledBackNotified(t *testing.T) {
	rcv := newObReceiver(t)
	p := obProject(t, rcv, "", "checks:\n  bad:\n    command: [\"false\"]\n    retries: 0\n")
	_, errs, code := p.run("rotate", "JWT_SECRET")
	if code != 7 {
		t.Fatalf("rotate with a failing check: exit %d\n%s", code, errs)
	}
	if ev := rcv.events(); len(ev) != 1 || ev[0] != rekey.EventRotationRolledBack {
		t.Fatalf("received %v, want one rotation.rolled_back\n%s", ev, errs)
	}
	m := rcv.msgs[0]
	if len(m.Secrets) != 1 || m.Secrets[0].Name != "JWT_SECRET" || m.Secrets[0].Fingerprint == "" || !strings.Contains(m.Command, "rekey rotate JWT_SECRET") {
		t.Errorf("message = %+v", m)
	}
	rcv.noValue(t, allValues(p, "JWT_SECRET", "WEBHOOK_SIGNING_SECRET")...)
	rcv.noDuplicates(t)
	if out := p.must("notify", "status"); out != "no notification waiting\n" {
		t.Errorf("notify status = %q", out)
	}
}

// TestOutboxReceiverDown: the receiver is down during a scheduled rotation:
// the command succeeds, the item is recorded failed with its error; once
// the receiver is back, `rekey notify flush` (after the backoff) delivers
// it exactly once, even when run twice.
func TestOutboxReceiverDown(t *testing.T) {
	rcv := newObReceiver(t)
	t0 := time.Now().AddDate(1, 0, 1).UTC().Truncate(time.Second)
	p := obProject(t, rcv, "", "")
	p.env["REKEY_TEST_NOW"] = t0.Format(time.RFC3339)
	rcv.set(true)
	_, errs, code := p.run("rotate", "--due")
	if code != 0 {
		t.Fatalf("rotate --due with the receiver down: exit %d\n%s", code, errs)
	}
	if !strings.Contains(errs, "not delivered") || !strings.Contains(errs, "503") {
		t.Errorf("no warning of the failed delivery:\n%s", errs)
	}
	st := p.must("notify", "status", "--json")
	var items []outboxItemJSON
	if err := json.Unmarshal([]byte(st), &items); err != nil || len(items) != 1 {
		t.Fatalf("notify status --json: %v\n%s", err, st)
	}
	if it := items[0]; it.Event != rekey.EventRotationScheduled || it.State != "failed" || it.Attempts != 1 || !strings.Contains(it.LastError, "503") ||
		it.NextAttempt == nil || !it.NextAttempt.Equal(t0.Add(time.Minute)) {
		t.Errorf("item = %+v", it)
	}
	// Back up; the rotation changed the signing secret.
	rcv.set(false, strings.TrimSpace(p.must("get", "WEBHOOK_SIGNING_SECRET")))
	if out := p.must("notify", "flush"); !strings.Contains(out, "0 delivered, 0 failed, 1 pending") {
		t.Errorf("flush before the next attempt is due: %q", out)
	}
	p.env["REKEY_TEST_NOW"] = t0.Add(2 * time.Minute).Format(time.RFC3339)
	for i := 0; i < 2; i++ {
		out := p.must("notify", "flush")
		want := []string{"1 delivered, 0 failed, 0 pending", "0 delivered, 0 failed, 0 pending"}[i]
		if !strings.Contains(out, want) {
			t.Errorf("flush %d: %q, want %q", i+1, out, want)
		}
	}
	if ev := rcv.events(); len(ev) != 1 || ev[0] != rekey.EventRotationScheduled {
		t.Fatalf("received %v", ev)
	}
	rcv.noDuplicates(t)
	rcv.noValue(t, allValues(p, "JWT_SECRET", "WEBHOOK_SIGNING_SECRET")...)
	if log := p.must("audit"); !strings.Contains(log, "notify.deliver") {
		t.Errorf("the deliveries are not audited:\n%s", log)
	}
}

// TestRemindOncePerDay: `rekey remind` sends the overdue reminders, and
// again the same day sends nothing new.
func TestRemindOncePerDay(t *testing.T) {
	rcv := newObReceiver(t)
	p := obProject(t, rcv, "", "")
	day := time.Now().AddDate(1, 0, 1).UTC().Truncate(24 * time.Hour).Add(9 * time.Hour)
	p.env["REKEY_TEST_NOW"] = day.Format(time.RFC3339)
	out := p.must("remind")
	if !strings.Contains(out, "overdue \"JWT_SECRET\"") && !strings.Contains(out, "overdue JWT_SECRET") || !strings.Contains(out, "(new)") {
		t.Fatalf("remind:\n%s", out)
	}
	first := len(rcv.events())
	if first == 0 {
		t.Fatalf("nothing delivered:\n%s", out)
	}
	p.env["REKEY_TEST_NOW"] = day.Add(3 * time.Hour).Format(time.RFC3339)
	out = p.must("remind")
	if strings.Contains(out, "(new)") || !strings.Contains(out, "already sent today") || len(rcv.events()) != first {
		t.Errorf("second remind the same day sent again (%d → %d):\n%s", first, len(rcv.events()), out)
	}
	rcv.noDuplicates(t)
	rcv.noValue(t, allValues(p, "JWT_SECRET", "WEBHOOK_SIGNING_SECRET")...)
	// The next day: reminded again.
	p.env["REKEY_TEST_NOW"] = day.Add(24 * time.Hour).Format(time.RFC3339)
	if out := p.must("remind"); !strings.Contains(out, "(new)") || len(rcv.events()) != 2*first {
		t.Errorf("the next day: %d deliveries\n%s", len(rcv.events()), out)
	}
}

// TestOutboxRefusesValue: an outbox item whose body holds a stored value
// (forged through the store API) is never sent: refused, marked so, and
// the flush exits 7.
func TestOutboxRefusesValue(t *testing.T) {
	rcv := newObReceiver(t)
	p := obProject(t, rcv, "", "")
	jwt := strings.TrimSpace(p.must("get", "JWT_SECRET"))
	key, err := seal.ParseKey(testMasterKey)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	anchors := filepath.Join(approval.StateDir(func(k string) string { return p.env[k] }), "anchors")
	st, err := sqlite.Open(ctx, filepath.Join(p.dir, ".rekey", "rekey.db"), key, sqlite.WithAnchor(anchors))
	if err != nil {
		t.Fatal(err)
	}
	m := notify.Message{Event: rekey.EventRotationFailed, Severity: notify.SeverityCritical, Title: "leak", Text: "the value is " + jwt,
		Environment: "production", IdempotencyKey: "forged-1"}
	body, _ := m.Encode()
	if err := st.Update(ctx, func(tx rekey.Tx) error {
		_, err := tx.Enqueue(rekey.OutboxItem{Env: "production", Channel: "hook", Event: m.Event, IdempotencyKey: "forged-1", Body: body})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	out, errs, code := p.run("notify", "flush")
	if code != 7 || !strings.Contains(out, "refused, never sent") {
		t.Fatalf("flush of a body holding a value: exit %d\n%s%s", code, out, errs)
	}
	if len(rcv.raw) != 0 {
		t.Fatalf("it was sent: %v", rcv.raw)
	}
	status := p.must("notify", "status")
	if !strings.Contains(status, "given-up") || strings.Contains(status, "next attempt") {
		t.Errorf("notify status:\n%s", status)
	}
	for _, f := range forms(jwt) {
		if strings.Contains(out+errs+status, f) {
			t.Fatalf("the value shows in the output")
		}
	}
	// Never tried again.
	if out, _, code := p.run("notify", "flush"); code != 0 || !strings.Contains(out, "0 delivered, 0 failed, 0 pending, 1 given up") {
		t.Errorf("second flush: exit %d %q", code, out)
	}
}
