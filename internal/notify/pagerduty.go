package notify

import (
	"context"
	"encoding/json"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/textsafe"
)

// DefaultPagerDutyURL is the Events API v2 endpoint.
const DefaultPagerDutyURL = "https://events.pagerduty.com/v2/enqueue"

// PagerDuty triggers an alert through the Events API v2: the routing key
// (an integration key: a credential) comes from a secret, the dedup key is
// the message's idempotency key, so a redelivery updates the same alert.
type PagerDuty struct {
	h   *httpSender
	key rekey.Value
}

// NewPagerDuty is the PagerDuty channel posting to rawURL (""
// DefaultPagerDutyURL) with routing key key.
func NewPagerDuty(b Base, rawURL string, key rekey.Value) (*PagerDuty, error) {
	if key.IsZero() {
		return nil, rekey.Errorf(rekey.CodeInvalid, "pagerduty %s: the routing key is empty", textsafe.Quote(b.ChannelName)).
			WithHint("set the secret its routing_key_secret names")
	}
	if rawURL == "" {
		rawURL = DefaultPagerDutyURL
	}
	h, err := newHTTP(b, "pagerduty", rawURL)
	if err != nil {
		return nil, err
	}
	h.Redact = hiding(b.Redact, key)
	return &PagerDuty{h: h, key: key}, nil
}

func (p *PagerDuty) Name() string     { return p.h.Name() }
func (p *PagerDuty) Describe() string { return p.h.describe() }

func (p *PagerDuty) Send(ctx context.Context, m Message) error {
	_, err := p.Deliver(ctx, m)
	return err
}

func (p *PagerDuty) Deliver(ctx context.Context, m Message) (string, error) {
	body, err := json.Marshal(PagerDutyBody(m, p.key.RevealString()))
	if err != nil {
		return "", rekey.Wrap(rekey.CodeInternal, err, "pagerduty: encode")
	}
	return p.h.post(ctx, body, nil)
}

// PagerDutyEvent is an Events API v2 event.
type PagerDutyEvent struct {
	RoutingKey  string           `json:"routing_key"`
	EventAction string           `json:"event_action"`
	DedupKey    string           `json:"dedup_key"`
	Client      string           `json:"client"`
	Payload     PagerDutyPayload `json:"payload"`
}

// PagerDutyPayload is the event's payload.
type PagerDutyPayload struct {
	Summary       string         `json:"summary"`
	Severity      string         `json:"severity"` // critical, error, warning or info
	Source        string         `json:"source"`
	Timestamp     string         `json:"timestamp,omitempty"`
	Class         string         `json:"class,omitempty"`
	Group         string         `json:"group,omitempty"`
	CustomDetails map[string]any `json:"custom_details,omitempty"`
}

// PagerDutyBody renders m as a trigger event.
func PagerDutyBody(m Message, routingKey string) PagerDutyEvent {
	details := map[string]any{"text": m.Text, "event": m.Event, "environment": m.Environment}
	if m.Command != "" {
		details["command"] = m.Command
	}
	if m.IncidentID != "" {
		details["incident_id"] = m.IncidentID
	}
	if len(m.Secrets) > 0 {
		details["secrets"] = m.Secrets
	}
	e := PagerDutyEvent{
		RoutingKey: routingKey, EventAction: "trigger", DedupKey: m.IdempotencyKey, Client: "rekey",
		Payload: PagerDutyPayload{
			Summary: cut(m.Title+" ("+m.Environment+")", 1024), Severity: m.Severity,
			Source: "rekey/" + m.Environment, Class: m.Event, Group: m.Environment, CustomDetails: details,
		},
	}
	if !m.Time.IsZero() {
		e.Payload.Timestamp = m.Time.UTC().Format("2006-01-02T15:04:05Z07:00")
	}
	return e
}
