package verify

import (
	"context"
	"time"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/proc"
)

// This file holds the command check: a program that exits 0 when the
// application works (run as internal/proc runs every command).

func (r *checkRun) command(ctx context.Context, c rekey.Command) (string, *attemptErr) {
	res := proc.Run(ctx, "check", c, proc.Options{Dir: r.o.Dir, Env: r.o.Env, Redact: r.redact, TailLines: 1, KillGrace: 2 * time.Second})
	if res.OK {
		return "exit status 0", nil
	}
	msg := c.String() + ": " + res.Err
	if len(res.Tail) > 0 {
		msg += ": " + res.Tail[len(res.Tail)-1]
	}
	return "", fail("run it by hand to see its output", "%s", msg)
}
