// Package rekey holds the domain of secret rotation: secret values, specs,
// versions, rotations, the Store and Target interfaces, and the rotation
// engine that drives a rotation through its journaled steps.
//
// # Secret hygiene
//
// A [Value] never prints: its String, Format, GoString, JSON, text and slog
// forms all redact. The only way to the bytes is [Value.Reveal], and code that
// calls it is code that publishes the value on purpose (a target, `rekey get`,
// the child of `rekey run`).
package rekey

import (
	"crypto/subtle"
	"fmt"
	"io"
	"log/slog"
)

// Redacted is what every printed form of a Value shows.
const Redacted = "[REDACTED]"

// Value is secret material. Its zero value is the empty secret.
type Value struct {
	b []byte
}

// NewValue returns a Value holding a copy of b.
func NewValue(b []byte) Value {
	return Value{b: append([]byte(nil), b...)}
}

// NewValueString returns a Value holding s.
func NewValueString(s string) Value { return Value{b: []byte(s)} }

// Reveal returns the secret bytes. Callers must not log, wrap or print them.
func (v Value) Reveal() []byte { return v.b }

// RevealString returns the secret as a string. Callers must not log, wrap or print it.
func (v Value) RevealString() string { return string(v.b) }

// Len is the length of the value in bytes.
func (v Value) Len() int { return len(v.b) }

// IsZero reports whether the value is empty.
func (v Value) IsZero() bool { return len(v.b) == 0 }

// Equal compares two values in constant time (for equal lengths).
func (v Value) Equal(o Value) bool { return subtle.ConstantTimeCompare(v.b, o.b) == 1 }

// String redacts.
func (Value) String() string { return Redacted }

// GoString redacts.
func (Value) GoString() string { return "rekey.Value(" + Redacted + ")" }

// Format redacts for every verb.
func (Value) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, Redacted) }

// MarshalJSON redacts.
func (Value) MarshalJSON() ([]byte, error) { return []byte(`"` + Redacted + `"`), nil }

// MarshalText redacts.
func (Value) MarshalText() ([]byte, error) { return []byte(Redacted), nil }

// LogValue redacts.
func (Value) LogValue() slog.Value { return slog.StringValue(Redacted) }

// Wipe zeroes the value's bytes in place.
func (v Value) Wipe() {
	for i := range v.b {
		v.b[i] = 0
	}
}
