package notify

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rekeyhq/rekey"
)

// script writes an executable shell script (the test's stand-in for a
// user's notify program; the channel itself runs it as an argv, no shell).
func script(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "notify.sh")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o700); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCommandStdinAndCleanEnv(t *testing.T) {
	dir := t.TempDir()
	out, envOut, argsOut := filepath.Join(dir, "stdin.json"), filepath.Join(dir, "env.txt"), filepath.Join(dir, "args.txt")
	prog := script(t, `cat > "$1"; env > "$2"; echo "$@" > "$3"`)
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir,
		"REKEY_MASTER_KEY=" + canaries[0].RevealString(), "REKEY_PASSPHRASE=" + canaries[1].RevealString(), "REKEY_ACTOR=alice"}
	c, err := NewCommand(Base{ChannelName: "script"}, []string{prog, out, envOut, argsOut}, dir, env)
	if err != nil {
		t.Fatal(err)
	}
	m := testMessage()
	if status, err := c.Deliver(context.Background(), m); err != nil || status != "exit 0" {
		t.Fatalf("Deliver = %q, %v", status, err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var got Message
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("stdin is not the message JSON: %v\n%s", err, b)
	}
	if got.IdempotencyKey != m.IdempotencyKey || got.Event != m.Event || got.Command != m.Command {
		t.Errorf("stdin message = %+v", got)
	}
	envText, _ := os.ReadFile(envOut)
	argsText, _ := os.ReadFile(argsOut)
	noCanary(t, "stdin", string(b))
	noCanary(t, "child environment", string(envText))
	noCanary(t, "argv", string(argsText))
	if strings.Contains(string(envText), "REKEY_MASTER_KEY") || strings.Contains(string(envText), "REKEY_PASSPHRASE") {
		t.Errorf("key material in the child environment:\n%s", envText)
	}
	if !strings.Contains(string(envText), "REKEY_ACTOR=alice") {
		t.Errorf("the rest of the environment is lost:\n%s", envText)
	}
}

func TestCommandFailures(t *testing.T) {
	t.Run("non-zero exit", func(t *testing.T) {
		prog := script(t, `cat >/dev/null; printf '\033[31mboom: token %s\033]0;pwned\007 rejected\nsecond line\n' "$LEAK" >&2; exit 3`)
		env := []string{"PATH=" + os.Getenv("PATH"), "LEAK=" + canaries[0].RevealString()}
		c, _ := NewCommand(Base{ChannelName: "script", Redact: redactCanaries}, []string{prog}, t.TempDir(), env)
		_, err := c.Deliver(context.Background(), testMessage())
		if err == nil || !strings.Contains(err.Error(), "exit status 3") || !strings.Contains(err.Error(), "boom: token") || rekey.ErrorCode(err) != rekey.CodeVerifyFailed {
			t.Fatalf("err = %v", err)
		}
		if strings.Contains(err.Error(), "second line") {
			t.Errorf("more than the first line: %v", err)
		}
		noControls(t, "error", err.Error())
		noCanary(t, "error", err.Error())
		if !strings.Contains(err.Error(), rekey.Redacted) {
			t.Errorf("not redacted: %v", err)
		}
	})
	t.Run("timeout kills the process group", func(t *testing.T) {
		dir := t.TempDir()
		marker := filepath.Join(dir, "child-survived")
		prog := script(t, `(sleep 1; touch "$1") & sleep 30`)
		c, _ := NewCommand(Base{ChannelName: "script", Timeout: 200 * time.Millisecond}, []string{prog, marker}, dir, []string{"PATH=" + os.Getenv("PATH")})
		_, err := c.Deliver(context.Background(), testMessage())
		if err == nil || !strings.Contains(err.Error(), "timed out after 200ms") {
			t.Fatalf("err = %v", err)
		}
		// The background child was in the group: it never gets to touch.
		time.Sleep(1500 * time.Millisecond)
		if _, err := os.Stat(marker); err == nil {
			t.Error("a process of the command's group outlived the timeout")
		}
	})
	t.Run("missing program", func(t *testing.T) {
		c, _ := NewCommand(Base{ChannelName: "script"}, []string{filepath.Join(t.TempDir(), "nope")}, "", nil)
		if _, err := c.Deliver(context.Background(), testMessage()); err == nil || !strings.Contains(err.Error(), "cannot start") {
			t.Errorf("err = %v", err)
		}
	})
}
