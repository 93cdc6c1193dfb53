package rekey

import "context"

// Target is a place secrets are published to, such as a .env file.
//
// Write must be atomic per target: after a crash the target holds either all
// of a write or none of it. Both methods are idempotent.
type Target interface {
	// Name identifies the target in messages ("app (.env)"); never a value.
	Name() string
	// Read returns the values the target holds for keys (absent keys are left out).
	Read(ctx context.Context, keys []string) (map[string]Value, error)
	// Write sets each key of set, removes each key of del, and leaves everything else as it was.
	Write(ctx context.Context, set map[string]Value, del []string) error
}
