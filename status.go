package rekey

import (
	"strconv"
	"time"
)

// Status states of a secret.
const (
	StateOK      = "ok"
	StateDueSoon = "due-soon"
	StateOverdue = "overdue"
	StateManual  = "manual"
	StateWeak    = "weak"
	StateMissing = "missing"
	// StateIncomplete: a data key whose re-encryption has not finished (rows
	// still need the previous key); `rekey reencrypt` finishes it.
	StateIncomplete = "reencrypt-incomplete"
	// StateDrift: a target holds a value the store does not know (a hand
	// edit of the .env): rekey will not publish over it.
	StateDrift = "drift"
)

// SecretStatus is one row of `rekey status`.
type SecretStatus struct {
	Name        string    `json:"name"`
	Environment string    `json:"environment"`
	Kind        Kind      `json:"kind"`
	Version     int       `json:"version"`
	LastRotated time.Time `json:"last_rotated,omitzero"`
	NextDue     time.Time `json:"next_due,omitzero"`
	Period      string    `json:"period,omitempty"`
	State       string    `json:"state"`
	Bits        int       `json:"bits"`
	Fingerprint string    `json:"fingerprint,omitempty"`
	// ValueOf is the version that first held the current value when a
	// rollback restored it (LastRotated is that version's creation);
	// RolledBackAt is when the rollback happened.
	ValueOf      int       `json:"value_of,omitempty"`
	RolledBackAt time.Time `json:"rolled_back_at,omitzero"`
}

// Attributes of a version created by `rekey rollback`: its value is an
// earlier version's, so its age is that version's, not the rollback's.
const (
	AttrValueSince = "value_since" // RFC 3339: when the value was first created
	AttrValueOf    = "value_of"    // the number of the version that first held it
)

// ValueSince is when v's value was first created: the creation of the
// version that first held it (AttrValueSince, set by a rollback), else v's
// own creation.
func (v Version) ValueSince() time.Time {
	if t, err := time.Parse(time.RFC3339Nano, v.Attrs[AttrValueSince]); err == nil && t.Before(v.CreatedAt) {
		return t.UTC()
	}
	return v.CreatedAt
}

// ValueOf is the number of the version that first held v's value: v.N
// unless a rollback copied an earlier one's (AttrValueOf).
func (v Version) ValueOf() int {
	if n, err := strconv.Atoi(v.Attrs[AttrValueOf]); err == nil && n > 0 && n < v.N {
		return n
	}
	return v.N
}

// RollbackAttrs are the attributes of a version that restores prev's
// value: the creation and number of the version that first held it (prev,
// or the one prev itself restored).
func RollbackAttrs(prev Version) map[string]string {
	return map[string]string{
		AttrValueSince: prev.ValueSince().UTC().Format(time.RFC3339Nano),
		AttrValueOf:    strconv.Itoa(prev.ValueOf()),
	}
}

// NeedsAttention reports whether the state makes `rekey status` exit non-zero.
func (s SecretStatus) NeedsAttention() bool {
	return s.State == StateOverdue || s.State == StateWeak || s.State == StateMissing || s.State == StateIncomplete || s.State == StateDrift
}

// DueSoonWindow is how long before its due date a secret is due-soon:
// 14 days, or a sixth of its period when that is shorter.
func DueSoonWindow(period time.Duration) time.Duration {
	w := 14 * Day
	if period/6 < w {
		w = period / 6
	}
	return w
}

// ComputeStatus derives the status rows of env from the specs, the current
// versions and the strength of their values.
func ComputeStatus(env string, specs []Spec, current map[string]Version, bits map[string]int, now time.Time) []SecretStatus {
	var out []SecretStatus
	for _, s := range specs {
		st := SecretStatus{Name: s.Name, Environment: env, Kind: s.Kind}
		if s.Period > 0 {
			st.Period = FormatDays(s.Period)
		}
		v, ok := current[s.Name]
		if !ok {
			st.State = StateMissing
			out = append(out, st)
			continue
		}
		// A value a rollback restored is as old as the version that first
		// held it: that is when it was last rotated, and when it falls due.
		st.Version, st.LastRotated, st.Fingerprint, st.Bits = v.N, v.ValueSince(), v.Fingerprint, bits[s.Name]
		if n := v.ValueOf(); n != v.N {
			st.ValueOf, st.RolledBackAt = n, v.CreatedAt
		}
		if s.Period > 0 {
			st.NextDue = st.LastRotated.Add(s.Period)
		}
		switch {
		case v.Attrs[AttrReencrypt] == "incomplete":
			st.State = StateIncomplete
		case s.Kind == KindManual:
			st.State = StateManual
			if !st.NextDue.IsZero() && !now.Before(st.NextDue) {
				st.State = StateOverdue
			}
		case !st.NextDue.IsZero() && !now.Before(st.NextDue):
			st.State = StateOverdue
		case st.Bits < MinBitsFor(&s):
			st.State = StateWeak
		case !st.NextDue.IsZero() && now.After(st.NextDue.Add(-DueSoonWindow(s.Period))):
			st.State = StateDueSoon
		default:
			st.State = StateOK
		}
		out = append(out, st)
	}
	return out
}

// FormatDays prints a period as "180 days" when it is whole days.
func FormatDays(d time.Duration) string {
	if d%Day == 0 {
		n := int(d / Day)
		if n == 1 {
			return "1 day"
		}
		return strconv.Itoa(n) + " days"
	}
	return d.String()
}
