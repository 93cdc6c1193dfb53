package postgres_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/rekeyhq/rekey/internal/postgres"
	"github.com/rekeyhq/rekey/internal/testkit"
)

func mustTryLogin(t *testing.T, role string, pw []byte) bool {
	t.Helper()
	ok, err := postgres.TryLogin(testCtx(t), params(t, role, pw))
	if err != nil {
		t.Fatalf("TryLogin: %v", err)
	}
	return ok
}

// TestSetPasswordRotation: a role changes its own password while logged
// in with the current one; the new one logs in, the old one is refused.
func TestSetPasswordRotation(t *testing.T) {
	admin := superConn(t)
	role := testkit.Unique("rotate")
	oldPw, newPw := []byte("Old-Pw-9f2c1a7e"), []byte("New-Pw-3b8d0e44")
	createLoginRole(t, admin, role, oldPw)
	if !mustTryLogin(t, role, oldPw) {
		t.Fatal("initial password refused")
	}

	self := login(t, role, oldPw)
	if err := postgres.CheckSCRAM(testCtx(t), self); err != nil {
		t.Fatal(err)
	}
	if err := postgres.SetPassword(testCtx(t), self, role, newPw); err != nil {
		t.Fatal(err)
	}
	if !mustTryLogin(t, role, newPw) {
		t.Error("new password refused")
	}
	if mustTryLogin(t, role, oldPw) {
		t.Error("old password still accepted")
	}
	// The session that rotated keeps working.
	if _, err := self.Exec(testCtx(t), "SELECT 1"); err != nil {
		t.Error(err)
	}
}

// TestAwkwardRoleNames: a double quote, a space and upper case in the role
// name work end to end: created, rotated by an admin and by itself, logged
// in through a URL built by Params.URL.
func TestAwkwardRoleNames(t *testing.T) {
	admin := superConn(t)
	for _, name := range []string{`My "App" Role`, "UPPER case", `x"`, "robert'); DROP ROLE postgres; --"} {
		t.Run(name, func(t *testing.T) {
			role := testkit.Unique(name)
			pw1, pw2, pw3 := []byte("first:p@ss/1 %"), []byte("second #2 ?x"), []byte("third\u00e9 3")
			createLoginRole(t, admin, role, pw1)
			conn := login(t, role, pw1)
			var who string
			if err := conn.QueryRow(testCtx(t), "SELECT current_user").Scan(&who); err != nil {
				t.Fatal(err)
			}
			if who != role {
				t.Fatalf("logged in as %q, want %q", who, role)
			}
			if err := postgres.SetPassword(testCtx(t), conn, role, pw2); err != nil {
				t.Fatal(err)
			}
			if err := postgres.SetPassword(testCtx(t), admin, role, pw3); err != nil {
				t.Fatal(err)
			}
			// Through DATABASE_URL: URL() then ParseURL.
			p := params(t, role, pw3)
			parsed, err := postgres.ParseURL(p.URL())
			if err != nil {
				t.Fatal(err)
			}
			if ok, err := postgres.TryLogin(testCtx(t), parsed); !ok || err != nil {
				t.Fatalf("login through URL: %v %v", ok, err)
			}
			for _, stale := range [][]byte{pw1, pw2} {
				if mustTryLogin(t, role, stale) {
					t.Error("stale password accepted")
				}
			}
		})
	}
	var n int
	if err := admin.QueryRow(testCtx(t), "SELECT count(*) FROM pg_roles WHERE rolname = 'postgres'").Scan(&n); err != nil || n != 1 {
		t.Fatalf("postgres role: %d %v", n, err)
	}
}

// TestServerLogHasNoPasswords: with log_statement=all the server logs every
// statement; after rotations through SetPassword, TryLogin, Probe and
// CloneRole, neither the old nor the new passwords appear in it (in any
// common encoding), only SCRAM verifiers.
func TestServerLogHasNoPasswords(t *testing.T) {
	c := testkit.Cluster(t)
	admin := superConn(t)
	role, clone := testkit.Unique("logcheck"), testkit.Unique("logcheck_clone")
	oldPw, newPw, clonePw := []byte("OldLogSecret-5d1e9a"), []byte("NewLogSecret-c47b2f"), []byte("CloneLogSecret-88aa01")
	createLoginRole(t, admin, role, oldPw)
	self := login(t, role, oldPw)
	if err := postgres.SetPassword(testCtx(t), self, role, newPw); err != nil {
		t.Fatal(err)
	}
	if i, err := postgres.Probe(testCtx(t), params(t, role, nil), [][]byte{oldPw, newPw}); i != 1 || err != nil {
		t.Fatalf("Probe = %d, %v", i, err)
	}
	if err := postgres.CloneRole(testCtx(t), admin, role, clone, clonePw); err != nil {
		t.Fatal(err)
	}
	// A refused statement is logged too (with its error): still no password.
	other := testkit.Unique("logcheck_other")
	createLoginRole(t, admin, other, []byte("OtherLogSecret-1"))
	if err := postgres.SetPassword(testCtx(t), self, other, newPw); err == nil {
		t.Fatal("unprivileged ALTER ROLE succeeded")
	}

	log, err := c.ServerLog()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(log, []byte("ALTER ROLE")) || !bytes.Contains(log, []byte("SCRAM-SHA-256$4096:")) {
		t.Fatalf("statements not logged; log_statement=all ineffective?")
	}
	for _, pw := range [][]byte{oldPw, newPw, clonePw} {
		for _, form := range []string{string(pw), strings.ToLower(string(pw)), string(pw[:10])} {
			if bytes.Contains(log, []byte(form)) {
				t.Errorf("server log contains a password (%d bytes of it)", len(form))
			}
		}
	}
}

// TestCheckSCRAM refuses a session whose password_encryption is md5.
func TestCheckSCRAM(t *testing.T) {
	pw := []byte("CheckScram-1")
	_, role := newLoginRole(t, "checkscram", pw)
	conn := login(t, role, pw)
	if err := postgres.CheckSCRAM(testCtx(t), conn); err != nil {
		t.Fatalf("default session refused: %v", err)
	}
	mustExec(t, conn, "SET password_encryption = 'md5'")
	err := postgres.CheckSCRAM(testCtx(t), conn)
	if !errors.Is(err, postgres.ErrNoSCRAM) {
		t.Fatalf("want ErrNoSCRAM, got %v", err)
	}
	if h := postgres.Hint(err); !strings.Contains(h, "scram-sha-256") {
		t.Errorf("hint: %q", h)
	}
	if !strings.Contains(err.Error(), `"md5"`) || !strings.Contains(err.Error(), role) {
		t.Errorf("error text: %s", err)
	}
}

// TestProbe picks the first candidate that logs in.
func TestProbe(t *testing.T) {
	current := []byte("Probe-Current-1")
	_, role := newLoginRole(t, "probe", current)
	p := params(t, role, nil)
	for _, c := range []struct {
		cands [][]byte
		want  int
	}{
		{[][]byte{[]byte("pending-x"), current, []byte("previous-y")}, 1},
		{[][]byte{current, []byte("x")}, 0},
		{[][]byte{nil, {}, []byte("nope"), current}, 3},
		{[][]byte{[]byte("a"), []byte("b")}, -1},
		{nil, -1},
	} {
		got, err := postgres.Probe(testCtx(t), p, c.cands)
		if err != nil || got != c.want {
			t.Errorf("Probe = %d, %v; want %d", got, err, c.want)
		}
	}
	// A server that cannot be reached is an error, not "no match".
	dead := p
	dead.Port = closedPort(t)
	if got, err := postgres.Probe(testCtx(t), dead, [][]byte{current}); got != -1 || !errors.Is(err, postgres.ErrUnreachable) {
		t.Errorf("Probe on a closed port = %d, %v", got, err)
	}
}

// TestSetPasswordRefusesEmpty: ALTER ROLE ... PASSWORD ” would remove the
// password; SetPassword never sends it.
func TestSetPasswordRefusesEmpty(t *testing.T) {
	pw := []byte("Empty-Check-1")
	admin, role := newLoginRole(t, "empty", pw)
	for _, bad := range []string{"", "a\x00b"} {
		if err := postgres.SetPassword(testCtx(t), admin, bad, pw); err == nil {
			t.Errorf("SetPassword accepted role name %q", bad)
		}
	}
	if err := postgres.SetPassword(testCtx(t), admin, role, nil); err == nil {
		t.Fatal("empty password accepted")
	}
	if !mustTryLogin(t, role, pw) {
		t.Fatal("password changed by a refused call")
	}
}
