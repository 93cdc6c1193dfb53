// Package notify renders one notification message and delivers it to one
// channel: a signed webhook, a Slack-compatible incoming webhook, the
// PagerDuty Events API v2, email over SMTP, or a command.
//
// A Message carries secret names, fingerprints and the next command to
// run, never a value: Message.Validate refuses one whose rendered bytes
// hold a managed value. The secrets a channel needs (a signing secret, a
// Slack URL, a PagerDuty routing key, an SMTP password) are rekey-managed
// values resolved by the caller and handed over as rekey.Value; they never
// appear in an error. Deliveries are bounded: timeouts, no redirect to
// another host, response bodies read up to a limit and shown, when an
// endpoint fails, as a short excerpt made safe for a terminal.
//
// The durable queue (the outbox) is the store's; this package only sends.
package notify

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/textsafe"
)

// The events a message reports: the domain's (rekey.Event*, what the
// store's outbox records), and a test message.
const (
	EventIncidentOpened      = rekey.EventIncidentOpened
	EventRotationFailed      = rekey.EventRotationFailed
	EventRotationRolledBack  = rekey.EventRotationRolledBack
	EventRotationScheduled   = rekey.EventRotationScheduled
	EventDueSoon             = rekey.EventDueSoon
	EventOverdue             = rekey.EventOverdue
	EventReencryptIncomplete = rekey.EventReencryptIncomplete
	EventTest                = "test"
)

// Events lists every event, in the order the README documents them.
var Events = []string{
	EventIncidentOpened, EventRotationFailed, EventRotationRolledBack, EventRotationScheduled,
	EventDueSoon, EventOverdue, EventReencryptIncomplete, EventTest,
}

// The severities.
const (
	SeverityInfo     = "info"
	SeverityWarning  = "warning"
	SeverityCritical = "critical"
)

// Severities lists the valid severities.
var Severities = []string{SeverityInfo, SeverityWarning, SeverityCritical}

// Message is one notification. It is what a webhook receives as its JSON
// body and a command on its stdin; the other channels render it.
type Message struct {
	Event          string      `json:"event"`
	Severity       string      `json:"severity"`
	Title          string      `json:"title"`
	Text           string      `json:"text"`
	Environment    string      `json:"environment"`
	Secrets        []SecretRef `json:"secrets,omitempty"`
	Command        string      `json:"command,omitempty"` // the next command to run
	IncidentID     string      `json:"incident_id,omitempty"`
	Time           time.Time   `json:"time"`
	IdempotencyKey string      `json:"idempotency_key"`
}

// SecretRef names a secret's version in a message: its name, version number
// and fingerprint (an HMAC, safe to show), never its value.
type SecretRef struct {
	Name        string `json:"name"`
	Version     int    `json:"version,omitempty"`
	Fingerprint string `json:"fingerprint,omitempty"`
}

// Encode is the message as JSON: the body a webhook receives.
func (m Message) Encode() ([]byte, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return nil, rekey.Wrap(rekey.CodeInternal, err, "notify: encode message")
	}
	return b, nil
}

// minCheckedLen: values shorter than this are not looked for by Validate
// (they would match ordinary words); managed secrets are much longer.
const minCheckedLen = 6

// Validate checks that m is well formed (an event, a known severity, an
// idempotency key) and that no managed value appears in it: values holds
// every managed value (every stored version), and m is refused when one
// appears in its JSON or in any of its texts, as is, JSON-, URL-, base64-
// or hex-encoded. The error never says which value, only which field.
func (m Message) Validate(values []rekey.Value) error {
	switch {
	case m.Event == "":
		return rekey.Errorf(rekey.CodeInvalid, "notify: message has no event")
	case !slices.Contains(Severities, m.Severity):
		return rekey.Errorf(rekey.CodeInvalid, "notify: message severity %q is not info, warning or critical", m.Severity)
	case m.IdempotencyKey == "":
		return rekey.Errorf(rekey.CodeInvalid, "notify: message has no idempotency key")
	}
	body, err := m.Encode()
	if err != nil {
		return err
	}
	fields := map[string]string{
		"json": string(body), "title": m.Title, "text": m.Text, "command": m.Command,
		"environment": m.Environment, "incident_id": m.IncidentID, "idempotency_key": m.IdempotencyKey, "event": m.Event,
	}
	for _, s := range m.Secrets {
		fields["secrets"] += s.Name + "\n" + s.Fingerprint + "\n"
	}
	for _, v := range values {
		if v.Len() < minCheckedLen {
			continue
		}
		for _, form := range forms(v) {
			for _, name := range sortedFields(fields) {
				if strings.Contains(fields[name], form) {
					return rekey.Errorf(rekey.CodeUnsafe, "notify: the %s of the %s message holds a secret value; it was not sent", name, m.Event).
						WithHint("a message names secrets and fingerprints only; this is a bug in what built it: report it")
				}
			}
		}
	}
	return nil
}

func sortedFields(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// forms are the encodings of v that Validate looks for.
func forms(v rekey.Value) []string {
	raw := v.RevealString()
	j, _ := json.Marshal(raw)
	out := []string{raw, string(j[1 : len(j)-1]), url.QueryEscape(raw), url.PathEscape(raw),
		base64.StdEncoding.EncodeToString(v.Reveal()), base64.RawURLEncoding.EncodeToString(v.Reveal()),
		hex.EncodeToString(v.Reveal())}
	if s := base64.StdEncoding.EncodeToString(v.Reveal()); len(s) > 4 {
		out = append(out, strings.TrimRight(s, "=")) // unpadded
	}
	return out
}

// Channel delivers a message to one destination.
type Channel interface {
	Name() string
	Send(ctx context.Context, m Message) error
}

// Deliverer is a Channel that also says what it delivered to and how the
// destination answered: every channel of this package is one.
type Deliverer interface {
	Channel
	// Describe names the destination without anything secret-like:
	// "webhook https://hooks.example.com/…", "email smtp.example.com:587".
	Describe() string
	// Deliver sends m and returns the destination's answer ("200",
	// "250 accepted", "exit 0").
	Deliver(ctx context.Context, m Message) (string, error)
}

// TestMessage is the message of `rekey notify test`.
func TestMessage(channel, env, actor string, now time.Time) Message {
	return Message{
		Event: EventTest, Severity: SeverityInfo,
		Title: "rekey test notification",
		Text: "A test message to channel " + channel + ", sent by " + actor +
			" with `rekey notify test`. If you can read this, the channel works; nothing needs doing.",
		Environment:    env,
		Command:        "rekey status",
		Time:           now.UTC().Truncate(time.Second),
		IdempotencyKey: "test-" + randomHex(8),
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// DefaultTimeout bounds one delivery when a channel sets no timeout.
const DefaultTimeout = 10 * time.Second

// Base holds what every channel has: its name in rekey.yaml, its timeout
// and the redactor of what a destination answers.
type Base struct {
	ChannelName string
	Timeout     time.Duration       // 0: DefaultTimeout
	Redact      func(string) string // applied to any text from outside shown in an error; nil keeps it
	Now         func() time.Time    // nil: time.Now
}

// Name is the channel's name.
func (b Base) Name() string { return b.ChannelName }

func (b Base) timeout() time.Duration {
	if b.Timeout <= 0 {
		return DefaultTimeout
	}
	return b.Timeout
}

func (b Base) now() time.Time {
	if b.Now != nil {
		return b.Now()
	}
	return time.Now()
}

func (b Base) redact(s string) string {
	if b.Redact != nil {
		return b.Redact(s)
	}
	return s
}

// failf is a delivery failure of channel b (exit status 7: the message was
// not delivered).
func (b Base) failf(kind, hint, format string, args ...any) *rekey.Error {
	e := rekey.Errorf(rekey.CodeVerifyFailed, "%s %s: %s", kind, textsafe.Quote(b.ChannelName), fmt.Sprintf(format, args...))
	if hint != "" {
		e = e.WithHint("%s", hint)
	}
	return e
}

// hiding is redact that also hides v (a channel's own credential, which
// an endpoint could echo back).
func hiding(redact func(string) string, v rekey.Value) func(string) string {
	return func(s string) string {
		if !v.IsZero() {
			s = strings.ReplaceAll(s, v.RevealString(), rekey.Redacted)
		}
		if redact != nil {
			s = redact(s)
		}
		return s
	}
}
