package sshhost

import (
	"context"

	"github.com/rekeyhq/rekey"
)

// WriteAfterRead is Write with between run after the read.
func WriteAfterRead(ctx context.Context, t *Target, set map[string]rekey.Value, between func()) error {
	return t.write(ctx, set, nil, between)
}
