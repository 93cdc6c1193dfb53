package rekey

import (
	"time"
	"unicode/utf8"
)

// The events a notification is about (OutboxItem.Event).
const (
	EventIncidentOpened      = "incident.opened"
	EventRotationFailed      = "rotation.failed"
	EventRotationRolledBack  = "rotation.rolled_back"
	EventRotationScheduled   = "rotation.scheduled"
	EventDueSoon             = "due.soon"
	EventOverdue             = "overdue"
	EventReencryptIncomplete = "reencrypt.incomplete"
)

// MaxLastError bounds OutboxItem.LastError, in bytes: a hostile endpoint's
// answer must not grow the store.
const MaxLastError = 500

// OutboxItem is a notification waiting for, or past, its delivery to one
// channel. It is recorded in the transaction of the event it tells of and
// delivered after it, at least once: the receiver tells repeats apart by
// IdempotencyKey.
type OutboxItem struct {
	ID             int64     `json:"id"` // assigned by Enqueue, ascending
	Created        time.Time `json:"created"`
	Env            string    `json:"environment,omitempty"`
	Channel        string    `json:"channel"` // its name in rekey.yaml
	Event          string    `json:"event"`   // Event*
	IdempotencyKey string    `json:"idempotency_key"`
	// Body is the message as the notify package built it (JSON); never a value.
	Body        []byte    `json:"body"`
	Attempts    int       `json:"attempts"`
	NextAttempt time.Time `json:"next_attempt"`
	Delivered   time.Time `json:"delivered,omitzero"` // zero: pending
	LastError   string    `json:"last_error,omitempty"`
}

// Pending reports whether the item still waits for its delivery.
func (o OutboxItem) Pending() bool { return o.Delivered.IsZero() }

// OutboxFilter selects outbox items.
type OutboxFilter struct {
	Pending bool      // only items not delivered yet
	DueBy   time.Time // only items whose NextAttempt is not after DueBy (zero: any)
	Limit   int       // at most this many (0: all)
}

// Match reports whether o passes the filter (Limit aside).
func (f OutboxFilter) Match(o OutboxItem) bool {
	if f.Pending && !o.Pending() {
		return false
	}
	return f.DueBy.IsZero() || !o.NextAttempt.After(f.DueBy)
}

// BoundError cuts an error text to MaxLastError bytes, at a character
// boundary.
func BoundError(s string) string {
	if len(s) <= MaxLastError {
		return s
	}
	s = s[:MaxLastError]
	// Drop the bytes of a character the cut split (at most UTFMax-1).
	for i := 0; i < utf8.UTFMax-1 && s != ""; i++ {
		if r, size := utf8.DecodeLastRuneInString(s); r != utf8.RuneError || size != 1 {
			break
		}
		s = s[:len(s)-1]
	}
	return s
}
