package rekey

import "context"

// This file holds what the rotation engine asks of what consumes the
// secrets: rekey.yaml's services:, checks: and on_rotate hooks (internal/app
// wires them).

// Services restarts the services that consume changed keys (rekey.yaml's
// services:). Keys are secret names, derived value names and previous-value
// keys; a service is affected when it consumes one.
type Services interface {
	Restart(ctx context.Context, keys []string) error
	Stop(ctx context.Context, keys []string) error
	Start(ctx context.Context, keys []string) error
}

// Checks verifies the application after a rotation (rekey.yaml's checks:).
// The error says which checks failed; it never holds a value.
type Checks interface {
	Run(ctx context.Context) error
}

// Hooks runs a secret's on_rotate hooks (session stores).
type Hooks interface {
	OnRotate(ctx context.Context, env string, spec *Spec) error
}
