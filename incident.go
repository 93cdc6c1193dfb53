package rekey

import (
	"encoding/hex"
	"io"
	"time"
)

// IncidentState is whether an incident is still being handled.
type IncidentState string

// The incident states.
const (
	IncidentOpen   IncidentState = "open"
	IncidentClosed IncidentState = "closed"
)

// The actions of an incident's timeline (IncidentEvent.Action).
const (
	ActionStop         = "stop"
	ActionRotate       = "rotate"
	ActionRestart      = "restart"
	ActionSessions     = "sessions"
	ActionProveDead    = "prove-dead"
	ActionAccessReview = "access-review"
	ActionScan         = "scan"
	ActionNotify       = "notify"
	ActionInterrupted  = "interrupted"
	ActionRecover      = "recover"
)

// The outcomes of a timeline event (IncidentEvent.Outcome).
const (
	OutcomeOK          = "ok"
	OutcomeFailed      = "failed"
	OutcomeSkipped     = "skipped"
	OutcomeInterrupted = "interrupted"
)

// The keys of an incident's follow-up items (FollowUp.Key); the per-secret
// ones are a prefix and the secret's name ("provider:STRIPE_KEY").
const (
	FollowUpRotateAll    = "rotate-all"
	FollowUpScanHistory  = "scan-history"
	FollowUpDoctor       = "doctor"
	FollowUpProvider     = "provider:"  // + secret name: rotate it at its provider
	FollowUpReencrypt    = "reencrypt:" // + secret name: re-encryption complete
	FollowUpReport       = "report"
	incidentIDRandomSize = 3
)

// Incident is the record of an exposure of secrets of one environment: what
// was exposed, everything done about it (the timeline) and what remains (the
// follow-ups). It never holds a value: versions are named by number and
// fingerprint. The store keeps it as its JSON (snake_case fields).
type Incident struct {
	ID          string        `json:"id"` // e.g. "INC-20261208-0a1b2c" (NewIncidentID)
	Env         string        `json:"environment"`
	OpenedAt    time.Time     `json:"opened_at"`
	OpenedBy    string        `json:"opened_by"` // the actor
	Reason      string        `json:"reason"`
	State       IncidentState `json:"state"`
	ClosedAt    time.Time     `json:"closed_at,omitzero"`
	ClosedBy    string        `json:"closed_by,omitempty"`
	CloseReason string        `json:"close_reason,omitempty"`
	Forced      bool          `json:"forced,omitempty"` // closed with items remaining (--force)
	// Stop: the services that consume an exposed secret are stopped before
	// it is rotated (--stop, or incident: {stop: true} in rekey.yaml).
	Stop      bool             `json:"stop,omitempty"`
	Secrets   []IncidentSecret `json:"secrets"`
	Timeline  []IncidentEvent  `json:"timeline"`
	FollowUps []FollowUp       `json:"follow_ups"`
}

// IncidentSecret is one exposed secret: the version that was exposed and
// the one that replaced it (0 and "" until the rotation created it).
type IncidentSecret struct {
	Name                   string `json:"name"`
	ExposedVersion         int    `json:"exposed_version"`
	ExposedFingerprint     string `json:"exposed_fingerprint"`
	Replacement            int    `json:"replacement,omitempty"`
	ReplacementFingerprint string `json:"replacement_fingerprint,omitempty"`
}

// IncidentEvent is one timestamped action of an incident and its outcome.
type IncidentEvent struct {
	At      time.Time `json:"at"`
	Action  string    `json:"action"`           // Action*
	Secret  string    `json:"secret,omitempty"` // the secret it concerns, if one
	Outcome string    `json:"outcome"`          // Outcome*
	Detail  string    `json:"detail,omitempty"` // never a value
}

// FollowUp is an item of the incident's follow-up list, with its deadline.
type FollowUp struct {
	Key    string    `json:"key"` // FollowUp*
	Title  string    `json:"title"`
	Due    time.Time `json:"due"`
	Done   bool      `json:"done,omitempty"`
	DoneAt time.Time `json:"done_at,omitzero"`
	DoneBy string    `json:"done_by,omitempty"`
	Note   string    `json:"note,omitempty"` // never a value
}

// IsOpen reports whether the incident is still open.
func (i *Incident) IsOpen() bool { return i.State == IncidentOpen }

// Remaining lists the follow-up items not done yet, in order.
func (i *Incident) Remaining() []FollowUp {
	var out []FollowUp
	for _, f := range i.FollowUps {
		if !f.Done {
			out = append(out, f)
		}
	}
	return out
}

// Overdue lists the follow-up items not done whose deadline is before now.
func (i *Incident) Overdue(now time.Time) []FollowUp {
	var out []FollowUp
	for _, f := range i.Remaining() {
		if !f.Due.IsZero() && f.Due.Before(now) {
			out = append(out, f)
		}
	}
	return out
}

// NewIncidentID makes an incident ID from the UTC date of now and three
// bytes of rnd (crypto/rand.Reader in production): "INC-20261208-0a1b2c".
func NewIncidentID(now time.Time, rnd io.Reader) (string, error) {
	b := make([]byte, incidentIDRandomSize)
	if _, err := io.ReadFull(rnd, b); err != nil {
		return "", err
	}
	return "INC-" + now.UTC().Format("20060102") + "-" + hex.EncodeToString(b), nil
}
