package notify

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/config"
)

// canaries are managed values that must never leave in a message.
var canaries = []rekey.Value{
	rekey.NewValueString("canary-JWT-9f8e7d6c5b4a39281706"),
	rekey.NewValueString("canary-DB-Zq0PLm3X7yTnR4vB2wK8"),
}

// testMessage is a message as rekey builds one: names and fingerprints.
func testMessage() Message {
	return Message{
		Event: EventIncidentOpened, Severity: SeverityCritical,
		Title:          "Incident INC-20261208-0a1b2c opened: JWT_SECRET exposed",
		Text:           "JWT_SECRET was exposed <!channel> & rotated; the old value is refused.",
		Environment:    "production",
		Secrets:        []SecretRef{{Name: "JWT_SECRET", Version: 4, Fingerprint: "fp:1a2b3c4d"}, {Name: "DATABASE_PASSWORD", Version: 7, Fingerprint: "fp:9e8d7c6b"}},
		Command:        "rekey incident status INC-20261208-0a1b2c",
		IncidentID:     "INC-20261208-0a1b2c",
		Time:           time.Date(2026, 12, 8, 10, 0, 0, 0, time.UTC),
		IdempotencyKey: "INC-20261208-0a1b2c/incident.opened/hook",
	}
}

// noCanary fails when what holds a canary value.
func noCanary(t *testing.T, where, what string) {
	t.Helper()
	for _, c := range canaries {
		if strings.Contains(what, c.RevealString()) {
			t.Errorf("%s holds a managed value", where)
		}
	}
}

// noControls fails when s holds a terminal control character.
func noControls(t *testing.T, where, s string) {
	t.Helper()
	for _, r := range s {
		if r == 0x1b || r == 0x07 || r == 0x9b || (r < 0x20 && r != '\n' && r != '\t') {
			t.Errorf("%s holds control character %U: %q", where, r, s)
			return
		}
	}
}

func redactCanaries(s string) string {
	for _, c := range canaries {
		s = strings.ReplaceAll(s, c.RevealString(), rekey.Redacted)
	}
	return s
}

// TestEventsMatchConfig: rekey.yaml's routes accept exactly the events
// this package sends (config cannot import notify: both are adapters).
func TestEventsMatchConfig(t *testing.T) {
	if !slices.Equal(Events, config.NotifyEvents) {
		t.Errorf("notify.Events = %v, config.NotifyEvents = %v", Events, config.NotifyEvents)
	}
	if !slices.Equal(Severities, []string{"info", "warning", "critical"}) {
		t.Errorf("severities = %v", Severities)
	}
}
