package config

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const notifyYAML = `version: 1
environments:
  production:
    targets:
      app: {type: dotenv, path: .env}
secrets:
  JWT_SECRET: {kind: generated, generator: {bytes: 32, encoding: base64}}
  HOOK_SECRET: {kind: generated, generator: {bytes: 32, encoding: hex}}
  SLACK_URL: {kind: manual}
  PD_KEY: {kind: manual}
  SMTP_PASSWORD: {kind: manual}
notify:
  channels:
    hook: {type: webhook, url: "https://ops.example.com/rekey", secret: HOOK_SECRET, timeout: 5s}
    hook2: {type: webhook, url_secret: SLACK_URL, secret: HOOK_SECRET}
    chat: {type: slack, url_secret: SLACK_URL}
    pager: {type: pagerduty, routing_key_secret: PD_KEY, url: "http://127.0.0.1:9/v2/enqueue"}
    mail:
      type: email
      smtp: smtp.example.com:587
      tls: implicit
      username: rekey
      password_secret: SMTP_PASSWORD
      from: rekey@example.com
      to: [security@example.com, "DBA <dba@example.com>"]
      ca_file: ./ca.pem
    script: {type: command, command: [./bin/notify, --all], timeout: 30s}
  contacts:
    security: [mail, chat]
    oncall: pager
    dba: [mail]
  events:
    incident.opened: [security, oncall, hook]
    due.soon: [chat]
`

func TestNotifyParse(t *testing.T) {
	dir := t.TempDir()
	c, err := Parse(filepath.Join(dir, FileName), []byte(notifyYAML))
	if err != nil {
		t.Fatal(err)
	}
	n := c.Notify
	if got := n.ChannelNames(); !slices.Equal(got, []string{"hook", "hook2", "chat", "pager", "mail", "script"}) {
		t.Fatalf("channels = %v", got)
	}
	mail, _ := n.Channel("mail")
	want := NotifyChannel{Name: "mail", Type: ChannelEmail, SMTP: "smtp.example.com:587", TLS: "implicit", Username: "rekey", PasswordSecret: "SMTP_PASSWORD",
		From: "rekey@example.com", To: []string{"security@example.com", "DBA <dba@example.com>"}, CAFile: filepath.Join(dir, "ca.pem"), Line: mail.Line}
	if d := cmp.Diff(want, *mail); d != "" {
		t.Errorf("mail (-want +got):\n%s", d)
	}
	hook, _ := n.Channel("hook")
	if hook.Timeout != 5*time.Second || hook.URL != "https://ops.example.com/rekey" || hook.Secret != "HOOK_SECRET" {
		t.Errorf("hook = %+v", hook)
	}
	if got := hook.Secrets(); !slices.Equal(got, []string{"HOOK_SECRET"}) {
		t.Errorf("hook secrets = %v", got)
	}
	script, _ := n.Channel("script")
	if !slices.Equal(script.Command, []string{"./bin/notify", "--all"}) {
		t.Errorf("script command = %v", script.Command)
	}
	for event, want := range map[string][]string{
		"incident.opened": {"mail", "chat", "pager", "hook"},
		"due.soon":        {"chat"},
		"overdue":         {"hook", "hook2", "chat", "pager", "mail", "script"}, // not routed: every channel
	} {
		if got := n.ChannelsFor(event); !slices.Equal(got, want) {
			t.Errorf("ChannelsFor(%s) = %v, want %v", event, got, want)
		}
	}
}

func TestNotifyRoundTrip(t *testing.T) {
	dir := t.TempDir()
	c, err := Parse(filepath.Join(dir, FileName), []byte(notifyYAML))
	if err != nil {
		t.Fatal(err)
	}
	out, err := Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "notify:") {
		t.Fatalf("no notify section in:\n%s", out)
	}
	c2, err := Parse(c.Path, out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	strip := func(n Notify) Notify {
		for i := range n.Channels {
			n.Channels[i].Line = 0
		}
		for i := range n.Contacts {
			n.Contacts[i].Line = 0
		}
		for i := range n.Events {
			n.Events[i].Line = 0
		}
		return n
	}
	if d := cmp.Diff(strip(c.Notify), strip(c2.Notify)); d != "" {
		t.Errorf("round trip (-want +got):\n%s", d)
	}
}
