package notify

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rekeyhq/rekey"
)

// receiver is a real HTTP server that records what it receives.
type receiver struct {
	mu      sync.Mutex
	bodies  [][]byte
	headers []http.Header
	paths   []string
}

func (r *receiver) record(req *http.Request) []byte {
	b, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.bodies = append(r.bodies, b)
	r.headers = append(r.headers, req.Header.Clone())
	r.paths = append(r.paths, req.URL.Path)
	return b
}

func (r *receiver) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.bodies)
}

func TestWebhookSignedDelivery(t *testing.T) {
	secret := rekey.NewValueString("whsec-0123456789abcdef0123456789abcdef")
	rec := &receiver{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body := rec.record(req)
		// What a receiver does: check the signature over timestamp and body.
		if err := Verify(secret.Reveal(), req.Header.Get(HeaderSignature), req.Header.Get(HeaderTimestamp), body, time.Minute); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()

	wh, err := NewWebhook(Base{ChannelName: "ops"}, srv.URL+"/hooks/rekey", secret)
	if err != nil {
		t.Fatal(err)
	}
	m := testMessage()
	status, err := wh.Deliver(context.Background(), m)
	if err != nil || status != "200" {
		t.Fatalf("Deliver = %q, %v", status, err)
	}
	if rec.count() != 1 {
		t.Fatalf("received %d deliveries", rec.count())
	}
	h := rec.headers[0]
	if h.Get(HeaderEvent) != EventIncidentOpened || h.Get(HeaderIdempotencyKey) != m.IdempotencyKey || h.Get("Content-Type") != "application/json" {
		t.Errorf("headers = %v", h)
	}
	var got Message
	if err := json.Unmarshal(rec.bodies[0], &got); err != nil {
		t.Fatal(err)
	}
	if got.IdempotencyKey != m.IdempotencyKey || got.IncidentID != m.IncidentID || len(got.Secrets) != 2 || got.Secrets[0].Fingerprint != "fp:1a2b3c4d" || !got.Time.Equal(m.Time) {
		t.Errorf("body = %+v", got)
	}
	all := string(rec.bodies[0])
	for k, v := range h {
		all += k + strings.Join(v, ",")
	}
	noCanary(t, "webhook delivery", all)
	if strings.Contains(all, secret.RevealString()) {
		t.Error("the signing secret was sent")
	}
	if d := wh.Describe(); d != "webhook "+srv.URL+"/…" {
		t.Errorf("Describe = %q", d)
	}

	// A receiver with another secret refuses it: the signature is real.
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		if err := Verify([]byte("another secret"), req.Header.Get(HeaderSignature), req.Header.Get(HeaderTimestamp), body, 0); err != nil {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
	}))
	defer other.Close()
	wh2, _ := NewWebhook(Base{ChannelName: "ops"}, other.URL, secret)
	if _, err := wh2.Deliver(context.Background(), m); err == nil || !strings.Contains(err.Error(), "HTTP 401 Unauthorized") || rekey.ErrorCode(err) != rekey.CodeVerifyFailed {
		t.Errorf("wrong secret: err = %v", err)
	}
}

func TestVerify(t *testing.T) {
	secret := []byte("s3cret")
	body := []byte(`{"event":"test"}`)
	now := time.Unix(1_800_000_000, 0)
	ts := unixSeconds(now)
	sig := "v1=" + Sign(secret, ts, body)
	if err := verifyAt(secret, sig, ts, body, time.Minute, now); err != nil {
		t.Fatalf("valid: %v", err)
	}
	if err := verifyAt(secret, "v0=abc, "+sig, ts, body, time.Minute, now); err != nil {
		t.Errorf("several signatures: %v", err)
	}
	for name, tc := range map[string]struct {
		header, ts string
		body       []byte
		now        time.Time
		want       error
	}{
		"body changed":      {sig, ts, []byte(`{"event":"tesT"}`), now, ErrBadSignature},
		"timestamp changed": {sig, unixSeconds(now.Add(time.Second)), body, now, ErrBadSignature},
		"replayed later":    {sig, ts, body, now.Add(10 * time.Minute), ErrStale},
		"no v1":             {"sha256=" + Sign(secret, ts, body), ts, body, now, ErrNoSignature},
		"bad timestamp":     {sig, "soon", body, now, ErrStale},
	} {
		if err := verifyAt(secret, tc.header, tc.ts, tc.body, time.Minute, tc.now); !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", name, err, tc.want)
		}
	}
}

func TestSlackBody(t *testing.T) {
	rec := &receiver{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		rec.record(req)
		_, _ = io.WriteString(w, "ok")
	}))
	defer srv.Close()
	hookURL := rekey.NewValueString(srv.URL + "/services/T0001/B0001/canaryXXXXXXXXXXXXXXXX")
	sl, err := NewSlack(Base{ChannelName: "chat"}, hookURL)
	if err != nil {
		t.Fatal(err)
	}
	if status, err := sl.Deliver(context.Background(), testMessage()); err != nil || status != "200" {
		t.Fatalf("Deliver = %q, %v", status, err)
	}
	if rec.paths[0] != "/services/T0001/B0001/canaryXXXXXXXXXXXXXXXX" {
		t.Errorf("path = %s", rec.paths[0])
	}
	var p struct {
		Text   string `json:"text"`
		Blocks []struct {
			Type string `json:"type"`
			Text *struct {
				Type, Text string
			} `json:"text"`
			Fields []struct{ Type, Text string } `json:"fields"`
		} `json:"blocks"`
	}
	if err := json.Unmarshal(rec.bodies[0], &p); err != nil {
		t.Fatal(err)
	}
	if p.Text == "" || len(p.Blocks) != 4 || p.Blocks[0].Type != "header" || p.Blocks[0].Text.Type != "plain_text" || p.Blocks[1].Type != "section" || p.Blocks[3].Type != "context" {
		t.Fatalf("payload = %s", rec.bodies[0])
	}
	if strings.Contains(string(rec.bodies[0]), "<!channel>") || !strings.Contains(p.Blocks[1].Text.Text, "&lt;!channel&gt; &amp; rotated") {
		t.Errorf("mrkdwn not escaped: %q", p.Blocks[1].Text.Text)
	}
	if !strings.Contains(string(rec.bodies[0]), "fp:1a2b3c4d") {
		t.Error("no fingerprint in the Slack message")
	}
	noCanary(t, "slack body", string(rec.bodies[0]))
	if d := sl.Describe(); strings.Contains(d, "canary") || d != "slack "+srv.URL+"/…" {
		t.Errorf("Describe shows the secret URL: %q", d)
	}
}

func TestPagerDutyBody(t *testing.T) {
	key := rekey.NewValueString("R0UT1NGKEY0123456789abcdefabcdef")
	rec := &receiver{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		rec.record(req)
		w.WriteHeader(http.StatusAccepted)
		_, _ = io.WriteString(w, `{"status":"success","message":"Event processed"}`)
	}))
	defer srv.Close()
	pd, err := NewPagerDuty(Base{ChannelName: "pager"}, srv.URL+"/v2/enqueue", key)
	if err != nil {
		t.Fatal(err)
	}
	m := testMessage()
	if status, err := pd.Deliver(context.Background(), m); err != nil || status != "202" {
		t.Fatalf("Deliver = %q, %v", status, err)
	}
	var ev struct {
		RoutingKey  string `json:"routing_key"`
		EventAction string `json:"event_action"`
		DedupKey    string `json:"dedup_key"`
		Payload     struct {
			Summary, Severity, Source, Timestamp string
			CustomDetails                        map[string]any `json:"custom_details"`
		} `json:"payload"`
	}
	if err := json.Unmarshal(rec.bodies[0], &ev); err != nil {
		t.Fatal(err)
	}
	if rec.paths[0] != "/v2/enqueue" || ev.RoutingKey != key.RevealString() || ev.EventAction != "trigger" || ev.DedupKey != m.IdempotencyKey {
		t.Errorf("event = %+v", ev)
	}
	p := ev.Payload
	if p.Severity != "critical" || p.Source != "rekey/production" || !strings.HasPrefix(p.Summary, "Incident INC-") || p.Timestamp != "2026-12-08T10:00:00Z" ||
		p.CustomDetails["command"] != m.Command || p.CustomDetails["incident_id"] != m.IncidentID {
		t.Errorf("payload = %+v", p)
	}
	noCanary(t, "pagerduty body", string(rec.bodies[0]))
	if DefaultPagerDutyURL != "https://events.pagerduty.com/v2/enqueue" {
		t.Error("default URL changed")
	}
}

// TestHostileEndpoints: an endpoint cannot hang rekey, flood it, send it
// elsewhere or write to the terminal through an error.
func TestHostileEndpoints(t *testing.T) {
	secret := rekey.NewValueString("whsec-hostile-0123456789abcdef")
	send := func(t *testing.T, url string, timeout time.Duration) (string, error) {
		t.Helper()
		wh, err := NewWebhook(Base{ChannelName: "ops", Timeout: timeout, Redact: redactCanaries}, url, secret)
		if err != nil {
			t.Fatal(err)
		}
		return wh.Deliver(context.Background(), testMessage())
	}

	t.Run("slow", func(t *testing.T) {
		release := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			select {
			case <-release:
			case <-req.Context().Done():
			}
		}))
		defer srv.Close()
		defer close(release)
		_, err := send(t, srv.URL, 300*time.Millisecond)
		if err == nil || !strings.Contains(err.Error(), "no answer from 127.0.0.1") || !strings.Contains(err.Error(), "within 300ms") {
			t.Errorf("err = %v", err)
		}
		if rekey.ErrorHint(err) == "" {
			t.Error("no hint")
		}
	})

	t.Run("huge body", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			w.WriteHeader(http.StatusInternalServerError)
			chunk := strings.Repeat("A", 64<<10)
			for range 256 { // 16 MiB, unless the client hangs up
				if _, err := io.WriteString(w, chunk); err != nil {
					return
				}
			}
		}))
		defer srv.Close()
		_, err := send(t, srv.URL, 5*time.Second)
		if err == nil || !strings.Contains(err.Error(), "HTTP 500 Internal Server Error") {
			t.Fatalf("err = %v", err)
		}
		if n := len(err.Error()); n > 600 {
			t.Errorf("error is %d bytes long", n)
		}
	})

	t.Run("redirect to another host", func(t *testing.T) {
		elsewhere := &receiver{}
		other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) { elsewhere.record(req) }))
		defer other.Close()
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			http.Redirect(w, req, other.URL+"/steal", http.StatusTemporaryRedirect)
		}))
		defer srv.Close()
		_, err := send(t, srv.URL, 5*time.Second)
		if err == nil || !strings.Contains(err.Error(), "HTTP 307") || !strings.Contains(err.Error(), "redirected to "+other.URL+", not followed") {
			t.Errorf("err = %v", err)
		}
		if elsewhere.count() != 0 {
			t.Errorf("the other host received %d requests", elsewhere.count())
		}
	})

	t.Run("redirect on the same host", func(t *testing.T) {
		rec := &receiver{}
		mux := http.NewServeMux()
		mux.HandleFunc("/old", func(w http.ResponseWriter, req *http.Request) {
			http.Redirect(w, req, "/new", http.StatusPermanentRedirect)
		})
		mux.HandleFunc("/new", func(w http.ResponseWriter, req *http.Request) { rec.record(req) })
		srv := httptest.NewServer(mux)
		defer srv.Close()
		if status, err := send(t, srv.URL+"/old", 5*time.Second); err != nil || status != "200" || rec.count() != 1 || len(rec.bodies[0]) == 0 {
			t.Errorf("status %q, err %v, received %d", status, err, rec.count())
		}
	})

	t.Run("terminal escapes and echoed secrets in the error body", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			w.WriteHeader(http.StatusBadGateway)
			_, _ = io.WriteString(w, "\x1b[2J\x1b]0;pwned\x07\r\nall good\u202e "+canaries[0].RevealString()+" \x9b31m")
		}))
		defer srv.Close()
		_, err := send(t, srv.URL, 5*time.Second)
		if err == nil || !strings.Contains(err.Error(), "HTTP 502 Bad Gateway") {
			t.Fatalf("err = %v", err)
		}
		noControls(t, "error", err.Error())
		if strings.ContainsRune(err.Error(), '\u202e') {
			t.Error("bidi override in the error")
		}
		noCanary(t, "error", err.Error())
		if !strings.Contains(err.Error(), rekey.Redacted) {
			t.Errorf("the echoed value was not redacted: %v", err)
		}
	})

	t.Run("refused connection", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		url := srv.URL
		srv.Close()
		_, err := send(t, url+"/x?token=abc", 5*time.Second)
		if err == nil || !strings.Contains(err.Error(), "cannot reach 127.0.0.1") || strings.Contains(err.Error(), "token=abc") {
			t.Errorf("err = %v", err)
		}
	})
}

func TestValidateCanary(t *testing.T) {
	m := testMessage()
	if err := m.Validate(canaries); err != nil {
		t.Fatalf("clean message refused: %v", err)
	}
	leak := canaries[1].RevealString()
	for name, mut := range map[string]func(*Message){
		"text":            func(m *Message) { m.Text += " value " + leak },
		"title":           func(m *Message) { m.Title = leak },
		"command":         func(m *Message) { m.Command = "psql postgres://app:" + leak + "@db" },
		"fingerprint":     func(m *Message) { m.Secrets[0].Fingerprint = leak },
		"base64 in text":  func(m *Message) { m.Text = "b64 " + "Y2FuYXJ5LURCLVpxMFBMbTNYN3lUblI0dkIyd0s4" },
		"idempotency key": func(m *Message) { m.IdempotencyKey = leak },
	} {
		mm := testMessage()
		mut(&mm)
		err := mm.Validate(canaries)
		if err == nil || rekey.ErrorCode(err) != rekey.CodeUnsafe {
			t.Errorf("%s: err = %v, want CodeUnsafe", name, err)
			continue
		}
		noCanary(t, "Validate's error", err.Error())
	}
	bad := testMessage()
	bad.Severity = "urgent"
	if err := bad.Validate(nil); err == nil {
		t.Error("unknown severity accepted")
	}
	bad = testMessage()
	bad.IdempotencyKey = ""
	if err := bad.Validate(nil); err == nil {
		t.Error("no idempotency key accepted")
	}
}
