package main

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rekeyhq/rekey/internal/notify"
)

// TestNotifyTestCLI: `rekey notify test` signs a real delivery with the
// managed signing secret, reports the receiver's answer, audits it, sends
// no value, and fails with exit 7, the status and a hint when the receiver
// refuses.
func TestNotifyTestCLI(t *testing.T) {
	p := &inProject{t: t, dir: t.TempDir(), env: map[string]string{
		"REKEY_MASTER_KEY": testMasterKey, "XDG_CONFIG_HOME": t.TempDir(), "XDG_STATE_HOME": t.TempDir(), "REKEY_ACTOR": "notify-test",
	}}
	p.init("JWT_SECRET=" + ctRandB64(48, base64.StdEncoding) + "\nWEBHOOK_SIGNING_SECRET=" + ctRandB64(32, base64.StdEncoding) + "\nPORT=8080\n")
	signing := strings.TrimSpace(p.must("get", "WEBHOOK_SIGNING_SECRET"))
	jwt := strings.TrimSpace(p.must("get", "JWT_SECRET"))

	var mu sync.Mutex
	var bodies []string
	fail := false
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		mu.Lock()
		defer mu.Unlock()
		all := string(body)
		for k, v := range req.Header {
			all += "\n" + k + ": " + strings.Join(v, ",")
		}
		bodies = append(bodies, all)
		if err := notify.Verify([]byte(signing), req.Header.Get(notify.HeaderSignature), req.Header.Get(notify.HeaderTimestamp), body, time.Minute); err != nil {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		if fail {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, "\x1b[2Jdown for maintenance\x07")
		}
	}))
	defer srv.Close()

	cfg := filepath.Join(p.dir, "rekey.yaml")
	f, err := os.OpenFile(cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.WriteString("notify:\n  channels:\n    hook: {type: webhook, url: \"" + srv.URL + "/rekey/events\", secret: WEBHOOK_SIGNING_SECRET, timeout: 5s}\n")
	_ = f.Close()

	// Not approved yet: nothing is sent.
	if _, errs, code := p.run("notify", "test", "hook"); code != 5 || len(bodies) != 0 {
		t.Fatalf("unapproved rekey.yaml: exit %d, %d deliveries\n%s", code, len(bodies), errs)
	}
	p.must("config", "trust")

	out := p.must("notify", "test", "hook")
	if want := "sent a test message to hook (webhook " + srv.URL + "/…: 200)\n"; out != want {
		t.Errorf("stdout = %q, want %q", out, want)
	}
	if len(bodies) != 1 {
		t.Fatalf("%d deliveries", len(bodies))
	}
	var m notify.Message
	if err := json.Unmarshal([]byte(strings.SplitN(bodies[0], "\n", 2)[0]), &m); err != nil {
		t.Fatal(err)
	}
	if m.Event != "test" || m.Environment != "production" || !strings.HasPrefix(m.IdempotencyKey, "test-") {
		t.Errorf("message = %+v", m)
	}
	for name, v := range map[string]string{"signing secret": signing, "JWT_SECRET": jwt} {
		for _, form := range forms(v) {
			if strings.Contains(bodies[0], form) {
				t.Errorf("the delivery holds the %s", name)
			}
		}
	}
	audit := p.must("audit")
	if !strings.Contains(audit, "notify.test") {
		t.Errorf("no notify.test in the audit log:\n%s", audit)
	}

	// The receiver refuses: exit 7, the status, a hint, no escape reaches the terminal.
	mu.Lock()
	fail = true
	mu.Unlock()
	out, errs, code := p.run("notify", "test", "hook")
	if code != 7 || out != "" || !strings.Contains(errs, "HTTP 503 Service Unavailable") || !strings.Contains(errs, "hint:") || strings.ContainsAny(errs, "\x1b\x07") {
		t.Errorf("refused: exit %d\nstdout %q\nstderr %q", code, out, errs)
	}
	// An unknown channel: exit 3 naming the channels there are.
	if _, errs, code := p.run("notify", "test", "pager"); code != 3 || !strings.Contains(errs, "channels: hook") {
		t.Errorf("unknown channel: exit %d\n%s", code, errs)
	}
}

// TestNotifyTestCommandChannel: a command channel (its argv relative to
// rekey.yaml's folder) gets the message on stdin and an environment
// without rekey's key material; no value reaches it.
func TestNotifyTestCommandChannel(t *testing.T) {
	p := &inProject{t: t, dir: t.TempDir(), env: map[string]string{
		"REKEY_MASTER_KEY": testMasterKey, "XDG_CONFIG_HOME": t.TempDir(), "XDG_STATE_HOME": t.TempDir(), "REKEY_ACTOR": "notify-test",
	}}
	p.init("JWT_SECRET=" + ctRandB64(48, base64.StdEncoding) + "\nPORT=8080\n")
	jwt := strings.TrimSpace(p.must("get", "JWT_SECRET"))
	p.write("bin/notify", "#!/bin/sh\ncat > \"$1\"\nenv > \"$2\"\n", 0o700)
	cfg := filepath.Join(p.dir, "rekey.yaml")
	f, err := os.OpenFile(cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.WriteString("notify:\n  channels:\n    script: {type: command, command: [./bin/notify, out/stdin.json, out/env.txt]}\n")
	_ = f.Close()
	if err := os.Mkdir(filepath.Join(p.dir, "out"), 0o700); err != nil {
		t.Fatal(err)
	}
	p.must("config", "trust")
	if out := p.must("notify", "test", "script"); out != "sent a test message to script (command "+filepath.Join(p.dir, "bin/notify")+": exit 0)\n" {
		t.Errorf("stdout = %q", out)
	}
	stdin, envText := p.read("out/stdin.json"), p.read("out/env.txt")
	var m notify.Message
	if err := json.Unmarshal([]byte(stdin), &m); err != nil || m.Event != "test" {
		t.Fatalf("stdin = %q (%v)", stdin, err)
	}
	if strings.Contains(envText, "REKEY_MASTER_KEY") || strings.Contains(envText, testMasterKey) {
		t.Errorf("the master key reached the command:\n%s", envText)
	}
	for _, form := range forms(jwt) {
		if strings.Contains(stdin+envText, form) {
			t.Error("a value reached the command")
		}
	}
}
