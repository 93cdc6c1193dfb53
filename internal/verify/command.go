package verify

import (
	"bytes"
	"context"
	"time"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/proc"
)

// This file holds the command check: a program that exits 0 when the
// application works (run as internal/proc runs every command). With
// stdin: NAME it reads NAME's value on its standard input, one line.

func (r *checkRun) command(ctx context.Context, c rekey.Command) (string, *attemptErr) {
	o := proc.Options{Dir: r.o.Dir, Env: r.o.Env, Redact: r.redact, TailLines: 1, KillGrace: 2 * time.Second}
	if name := r.c.Stdin; name != "" {
		o.Stdin = append(bytes.Clone(r.values[name].Reveal()), '\n')
		defer clear(o.Stdin)
	}
	res := proc.Run(ctx, "check", c, o)
	if res.OK {
		return "exit status 0", nil
	}
	msg := c.String() + ": " + res.Err
	if len(res.Tail) > 0 {
		msg += ": " + res.Tail[len(res.Tail)-1]
	}
	return "", fail("run it by hand to see its output", "%s", msg)
}
