package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/rekeyhq/rekey"
)

func TestErrorCodeName(t *testing.T) {
	for _, c := range []struct {
		err  error
		exit int
		want string
	}{
		{rekey.Errorf(rekey.CodeInvalid, "x"), 2, "invalid"},
		{rekey.Errorf(rekey.CodeNotFound, "x"), 3, "not_found"},
		{rekey.Errorf(rekey.CodeConflict, "x"), 4, "conflict"},
		{rekey.Errorf(rekey.CodeUnsafe, "x"), 5, "unsafe"},
		{rekey.Errorf(rekey.CodeAuth, "x"), 6, "auth"},
		{rekey.Errorf(rekey.CodeVerifyFailed, "x"), 7, "verify_failed"},
		{errors.New("x"), 1, "internal"},
		{&usageError{err: errors.New("x")}, 2, "usage"},
		{errors.New("x"), 130, "interrupted"},
		{errors.New("x"), 143, "interrupted"},
	} {
		if got := errorCodeName(c.err, c.exit); got != c.want {
			t.Errorf("%v (exit %d): %q, want %q", c.err, c.exit, got, c.want)
		}
	}
}

// TestJSONErrorInterrupted: a command given --json that SIGINT or SIGTERM
// cut short ends with the interrupted error object, exit 130 or 143.
func TestJSONErrorInterrupted(t *testing.T) {
	p := &inProject{t: t, dir: t.TempDir(), env: map[string]string{
		"REKEY_MASTER_KEY": testMasterKey, "XDG_CONFIG_HOME": t.TempDir(), "XDG_STATE_HOME": t.TempDir(), "REKEY_ACTOR": "json-test",
	}}
	p.init("JWT_SECRET=" + strings.Repeat("c2VjcmV0", 12) + "\n")
	for sig, code := range map[os.Signal]int{syscall.SIGINT: 130, syscall.SIGTERM: 143} {
		var out, errb bytes.Buffer
		m := &Main{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Dir: p.dir, Env: p.env,
			Interrupted: func() os.Signal { return sig }}
		if got := m.Run(context.Background(), []string{"status", "--json"}); got != code {
			t.Fatalf("%v: exit %d, want %d", sig, got, code)
		}
		var e jsonError
		if err := json.Unmarshal(errb.Bytes(), &e); err != nil {
			t.Fatalf("%v: stderr is no JSON error: %v\n%s", sig, err, errb.String())
		}
		if e.Error.Code != "interrupted" || e.Error.ExitCode != code || !strings.Contains(e.Error.Message, "nothing was changed") {
			t.Errorf("%v: %+v", sig, e.Error)
		}
	}
}
