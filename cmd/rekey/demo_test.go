package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rekeyhq/rekey/internal/testkit"
)

// TestDemoPostgres runs `rekey demo --with-postgres` (the README's second
// command) in-process with the reference app built apart, and checks the
// story it tells: every secret rotated, old tokens and the old password
// refused once the grace ends, PII intact, everything stopped.
func TestDemoPostgres(t *testing.T) {
	testkit.Long(t, "about 25 s: the demo waits for its grace period to end")
	dir := t.TempDir()
	var out, errb bytes.Buffer
	m := &Main{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Env: map[string]string{"REKEY_ACTOR": "demo-test"}}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	code := m.Run(ctx, []string{"demo", "--with-postgres", "--dir", dir, "--app", e2eApp(t)})
	if code != 0 && strings.Contains(errb.String(), "needs PostgreSQL's server binaries") {
		testkit.SkipOrFail(t, "%s", errb.String())
	}
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errb.String())
	}
	for _, want := range []string{
		"Started the app (atlas-app",
		"$ rekey rotate --all",
		"the new token is signed with the new JWT_SECRET (yes); the token from before is not (no)",
		"the token from before still works during the 20s grace (graceful sessions): GET /patients/1 → 200",
		"PII still reads: 20 of 20 patients read back identical",
		"the token from before the rotation is refused now: GET /patients/1 → 401",
		"the old password is refused: atlas_blue logs in with it: refused; the app's login role atlas_green: accepted",
		"login and PII still work: patient 20 reads",
		"$ rekey audit verify",
		"Stopped the app and removed the throwaway PostgreSQL cluster.",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the demo did not say %q:\n%s", want, out.String())
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "atlas-backend", "app.pid")); err == nil {
		t.Error("the app's pidfile is still there: the app was not stopped")
	}
}
