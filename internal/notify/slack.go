package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/rekeyhq/rekey"
)

// Slack posts to a Slack-compatible incoming webhook: {"text": ..., "blocks":
// [...]}. Its URL is a credential (whoever has it can post), so rekey.yaml
// names the secret that holds it.
type Slack struct{ h *httpSender }

// NewSlack is the Slack channel for the incoming webhook URL url (a value).
func NewSlack(b Base, url rekey.Value) (*Slack, error) {
	h, err := newHTTP(b, "slack", url.RevealString())
	if err != nil {
		return nil, err
	}
	h.Redact = hiding(b.Redact, url)
	return &Slack{h: h}, nil
}

func (s *Slack) Name() string     { return s.h.Name() }
func (s *Slack) Describe() string { return s.h.describe() }

func (s *Slack) Send(ctx context.Context, m Message) error {
	_, err := s.Deliver(ctx, m)
	return err
}

func (s *Slack) Deliver(ctx context.Context, m Message) (string, error) {
	body, err := json.Marshal(SlackBody(m))
	if err != nil {
		return "", rekey.Wrap(rekey.CodeInternal, err, "slack: encode")
	}
	return s.h.post(ctx, body, nil)
}

// SlackPayload is the body of an incoming webhook.
type SlackPayload struct {
	Text   string       `json:"text"`
	Blocks []SlackBlock `json:"blocks"`
}

// SlackBlock is one Block Kit block (header, section, context).
type SlackBlock struct {
	Type     string      `json:"type"`
	Text     *SlackText  `json:"text,omitempty"`
	Fields   []SlackText `json:"fields,omitempty"`
	Elements []SlackText `json:"elements,omitempty"`
}

// SlackText is a text object: plain_text or mrkdwn.
type SlackText struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

// SlackBody renders m: a header (the title), the text, a field per secret
// (name, version, fingerprint) and the command to run. Text from rekey.yaml
// or a reason typed by a person is escaped for mrkdwn (&, <, >), so it
// cannot turn into a link or a mention.
func SlackBody(m Message) SlackPayload {
	p := SlackPayload{Text: fmt.Sprintf("[%s] %s (%s)", m.Severity, m.Title, m.Environment)}
	p.Blocks = append(p.Blocks,
		SlackBlock{Type: "header", Text: &SlackText{Type: "plain_text", Text: cut(m.Title, 150)}},
		SlackBlock{Type: "section", Text: &SlackText{Type: "mrkdwn", Text: cut(mrkdwn(m.Text), 3000)}})
	var fields []SlackText
	fields = append(fields, SlackText{Type: "mrkdwn", Text: "*Environment*\n" + mrkdwn(m.Environment)},
		SlackText{Type: "mrkdwn", Text: "*Severity*\n" + mrkdwn(m.Severity)})
	if m.IncidentID != "" {
		fields = append(fields, SlackText{Type: "mrkdwn", Text: "*Incident*\n" + mrkdwn(m.IncidentID)})
	}
	for _, s := range m.Secrets {
		if len(fields) == 10 { // Block Kit's limit per section
			break
		}
		fields = append(fields, SlackText{Type: "mrkdwn", Text: fmt.Sprintf("*%s*\nv%d %s", mrkdwn(s.Name), s.Version, mrkdwn(s.Fingerprint))})
	}
	p.Blocks = append(p.Blocks, SlackBlock{Type: "section", Fields: fields})
	ctx := "event " + mrkdwn(m.Event) + " · key " + mrkdwn(m.IdempotencyKey)
	if m.Command != "" {
		ctx = "next: `" + mrkdwn(strings.ReplaceAll(m.Command, "`", "'")) + "` · " + ctx
	}
	p.Blocks = append(p.Blocks, SlackBlock{Type: "context", Elements: []SlackText{{Type: "mrkdwn", Text: ctx}}})
	return p
}

// mrkdwn escapes the three characters Slack's mrkdwn reads as markup.
func mrkdwn(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// cut shortens s to at most n runes.
func cut(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
