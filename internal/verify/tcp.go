package verify

// This file holds the tcp check: a connection to host:port.

import (
	"context"
	"errors"
	"net"
	"syscall"

	"github.com/rekeyhq/rekey"
)

func isTimeout(ctx context.Context, err error) bool {
	var ne net.Error
	return ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

func (r *checkRun) tcp(ctx context.Context, t *rekey.TCPCheck) (string, *attemptErr) {
	what := "connect to " + t.Address.Source()
	addr, err := r.render(t.Address)
	if err != nil {
		return "", err
	}
	var d net.Dialer
	conn, derr := d.DialContext(ctx, "tcp", addr)
	if derr != nil {
		switch {
		case errors.Is(derr, syscall.ECONNREFUSED):
			return "", fail("nothing listens there: "+restartHint, "%s: connection refused", what)
		case isTimeout(ctx, derr):
			return "", fail("check the address, and that a firewall does not drop the connection", "%s: no answer within %s", what, rekey.FormatDuration(r.c.Timeout))
		}
		var oe *net.OpError
		if errors.As(derr, &oe) && oe.Err != nil {
			derr = oe.Err
		}
		return "", fail("check the address", "%s: %s", what, derr.Error())
	}
	conn.Close()
	return "connected", nil
}
