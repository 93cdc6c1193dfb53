package rekey

import (
	"context"
	"errors"
	"maps"
)

// This file holds what the rotation engine (internal/engine) asks of the
// systems behind a secret; adapters (internal/postgres, internal/app's
// data-key applier) implement it.

// VersionValue is one version of a secret with its value, as appliers see
// it: the value and the version's number and attributes (the login role of an
// alternating PostgreSQL password). Zero when there is no such version.
type VersionValue struct {
	Version
	Value Value
}

// Applier adds kind-specific work to a rotation (PostgreSQL role passwords,
// re-encryption). Every method must be idempotent: recovery may call it again
// after a crash at any point.
type Applier interface {
	// Apply makes the backing system accept the pending value.
	Apply(ctx context.Context, env string, spec *Spec, pending, current VersionValue) error
	// Revert makes the backing system accept current again (rollback).
	Revert(ctx context.Context, env string, spec *Spec, pending, current VersionValue) error
}

// Preflighter is an Applier that can tell, before a rotation, whether its
// backing system is reachable with the current value.
type Preflighter interface {
	Preflight(ctx context.Context, env string, spec *Spec, current VersionValue) error
}

// Attributer is an Applier that chooses the attributes of a new version from
// the current one's (the idle role of an alternating pair). It does no I/O:
// it runs inside the transaction that seals the new version.
type Attributer interface {
	Attrs(spec *Spec, current Version) map[string]string
}

// Expirer is an Applier whose superseded version stays valid for a grace
// period after a rotation (the previous role of an alternating pair). Expire
// ends it (a fresh random password nobody knows); it must be idempotent.
type Expirer interface {
	Expire(ctx context.Context, env string, spec *Spec, old VersionValue) error
}

// Verifier is an Applier that checks its backing system after publish (a
// login with the new value; the old one refused).
type Verifier interface {
	Verify(ctx context.Context, env string, spec *Spec, pending, current VersionValue) error
}

// Prober is an Applier that can tell whether the backing system accepts a
// candidate value (a PostgreSQL login), for `rekey recover --probe`.
type Prober interface {
	Accepts(ctx context.Context, env string, spec *Spec, candidate VersionValue) (bool, error)
}

// Migrator moves the data protected by a secret (the rows a data key
// encrypts) from the current value to the pending one after publish. It is
// not an Applier: the backing system holds data under the key, not the key.
// Migrate must be resumable: after a crash it is called again and continues.
type Migrator interface {
	Migrate(ctx context.Context, env string, spec *Spec, pending, current VersionValue, rotationID string) error
}

// ErrIncomplete marks a migration that ended with data still on the old key
// (rows that open with neither key): the old key stays published and sealed.
var ErrIncomplete = errors.New("re-encryption incomplete")

// Version attributes the engine keeps.
const (
	AttrGraceUntil = "grace_until" // RFC 3339: the superseded value works until then
	AttrExpired    = "expired"     // RFC 3339: when the grace ended
	AttrReencrypt  = "reencrypt"   // "incomplete" while rows are still on the previous key
)

// WithAttr returns a copy of attrs with k set to v (removed when v is "").
func WithAttr(attrs map[string]string, k, v string) map[string]string {
	a := maps.Clone(attrs)
	if a == nil {
		a = map[string]string{}
	}
	if v == "" {
		delete(a, k)
	} else {
		a[k] = v
	}
	return a
}
