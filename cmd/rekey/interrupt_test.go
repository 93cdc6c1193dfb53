package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"syscall"
	"testing"
)

// TestInterruptedExitCodes: a run cut short by SIGINT exits 130, by SIGTERM
// 143, with one line; a command that acted on no environment says nothing
// was changed.
func TestInterruptedExitCodes(t *testing.T) {
	for _, tc := range []struct {
		sig  os.Signal
		code int
		name string
	}{{os.Interrupt, 130, "SIGINT"}, {syscall.SIGTERM, 143, "SIGTERM"}} {
		var out, errb bytes.Buffer
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		m := &Main{Stdout: &out, Stderr: &errb, Dir: t.TempDir(), Interrupted: func() os.Signal { return tc.sig }}
		if code := m.Run(ctx, []string{"version"}); code != tc.code {
			t.Errorf("%s: exit %d, want %d", tc.name, code, tc.code)
		}
		if got := errb.String(); got != "rekey: interrupted ("+tc.name+"): nothing was changed\n" {
			t.Errorf("%s: stderr %q", tc.name, got)
		}
		if strings.Contains(errb.String(), "hint") {
			t.Errorf("a hint after an interruption: %q", errb.String())
		}
	}
}
