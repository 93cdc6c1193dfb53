package main

// The active role of an alternating pair whose password someone changed by
// hand, outside rekey: no command may lock the application out, and the
// error names a command that helps (not `rekey set`, which cannot: its new
// version goes to the other role, whose password only a session of the
// active one may change with changed_by: self).

import (
	"encoding/base64"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/rekeyhq/rekey/internal/postgres"
	"github.com/rekeyhq/rekey/internal/testkit"
)

func TestPostgresAlternatingHandChanged(t *testing.T) {
	c := startCluster(t)
	p := pgaNewProject(t, c, pgaOptions{createRole: true, initFlag: "--postgres-alternating"})
	p.mustLog("rotate", "DATABASE_PASSWORD") // v2 on green, the active role
	u, active, _ := p.envURL()
	if active != p.green {
		t.Fatalf("after a rotation the .env logs in as %s, want %s", active, p.green)
	}
	byHand := ctRandB64(24, base64.RawURLEncoding)
	testkit.SetPassword(t, c.SuperConnString("postgres"), active, byHand)
	if p.reads(u) {
		t.Fatal("the hand change did not take")
	}

	r := p.setResult(t, ctRandB64(24, base64.RawURLEncoding))
	if c.Major < postgres.AdminOptionMajor {
		// changed_by: self: the active role's session changes the idle
		// role's password, and the database refuses its stored password.
		if r.code == 0 {
			t.Fatalf("set with the active role's password changed by hand succeeded: %v", r)
		}
		if strings.Contains(r.stderr, "with `rekey set") {
			t.Errorf("the error sends the user back to `rekey set`, which just failed:\n%s", r.stderr)
		}
		for _, want := range []string{"recover --probe", "rekey get DATABASE_PASSWORD", "changed_by: admin", active} {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("the error does not say %q:\n%s", want, r.stderr)
			}
		}
	} else if r.code == 0 {
		// changed_by: admin: the admin sets the idle role's password; the
		// verify step finds the active one refused and the rotation rolls
		// back, putting the stored password on it again.
		t.Fatalf("set with the active role's password changed by hand succeeded (verify should refuse): %v", r)
	}
	// Whatever the version, the .env is untouched and the stored current
	// version is what it was.
	if u2, user2, _ := p.envURL(); u2 != u || user2 != active {
		t.Fatalf("the refused set changed the .env (now %s)", user2)
	}
	if r := p.runLog("recover", "--probe"); r.code == 0 && strings.Contains(r.stdout, "accepts the current") && !p.reads(u) {
		t.Errorf("recover --probe says the current version is accepted, but it does not log in:\n%s", r.stdout)
	}
	p.checkNoLeak(byHand)
}

// setResult runs `rekey set DATABASE_PASSWORD` with val on stdin and
// returns its result whatever its exit code.
func (p *pgaProject) setResult(t *testing.T, val string) ctResult {
	t.Helper()
	args := []string{"set", "DATABASE_PASSWORD"}
	cmd, stdout, stderr := p.command(nil, args...)
	cmd.Stdin = strings.NewReader(val + "\n")
	start := time.Now()
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	r := p.finish(cmd, err, stdout, stderr, args, start)
	p.outputs = append(p.outputs, r.stdout, r.stderr)
	return r
}
