package postgres_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/postgres"
	"github.com/rekeyhq/rekey/internal/testkit"
)

// TestMD5PasswordWarning18: storing an MD5 password (the legacy way a role
// got one) makes PostgreSQL 18 send a WARNING (md5_password_warnings), 15
// to 17 nothing. On rekey's sessions it is no error and is never printed
// raw: with WithNotes it becomes one note, without it it is dropped.
func TestMD5PasswordWarning18(t *testing.T) {
	admin := superConn(t)
	major := testkit.Cluster(t).Major
	p := params(t, "postgres", []byte(testkit.Cluster(t).SuperPassword))
	ctx, sink := notesCtx(t)
	conn, err := postgres.Connect(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	role := testkit.Unique("md5warn")
	for i := 0; i < 2; i++ {
		if _, err := conn.Exec(ctx, "CREATE ROLE "+postgres.QuoteIdent(role)+" LOGIN PASSWORD '"+md5Hash("Legacy-1", role)+"'"); err != nil {
			t.Fatalf("PostgreSQL %d: %v", major, err)
		}
		if _, err := conn.Exec(ctx, "DROP ROLE "+postgres.QuoteIdent(role)); err != nil {
			t.Fatal(err)
		}
	}
	notes := sink.all()
	switch {
	case major >= postgres.MD5DeprecatedMajor:
		if len(notes) != 1 || !strings.Contains(notes[0], "setting an MD5-encrypted password") ||
			!strings.Contains(notes[0], "MD5 password support is deprecated") || !strings.HasPrefix(notes[0], "PostgreSQL warns (session of role \"postgres\"): ") {
			t.Errorf("PostgreSQL %d: notes = %q, want the deprecation warning once", major, notes)
		}
		var on string
		if err := admin.QueryRow(testCtx(t), "SHOW md5_password_warnings").Scan(&on); err != nil || on != "on" {
			t.Errorf("md5_password_warnings = %q, %v", on, err)
		}
	default:
		if len(notes) != 0 {
			t.Errorf("PostgreSQL %d: notes = %q, want none", major, notes)
		}
		if _, err := admin.Exec(testCtx(t), "SHOW md5_password_warnings"); err == nil {
			t.Errorf("PostgreSQL %d knows md5_password_warnings", major)
		}
	}
	// Without WithNotes the warning is dropped, and is no error either.
	plain, err := postgres.Connect(testCtx(t), p)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close(context.Background())
	if _, err := plain.Exec(testCtx(t), "CREATE ROLE "+postgres.QuoteIdent(role)+" LOGIN PASSWORD '"+md5Hash("Legacy-1", role)+"'"); err != nil {
		t.Fatal(err)
	}
}

// TestNoticesBecomeNotes: a WARNING on a session of rekey's becomes a note
// (once, the session's password scrubbed); NOTICE and INFO are dropped.
func TestNoticesBecomeNotes(t *testing.T) {
	pw := []byte("Notice-Pw-7")
	_, role := newLoginRole(t, "notices", pw)
	ctx, sink := notesCtx(t)
	conn, err := postgres.Connect(ctx, params(t, role, pw))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	for _, level := range []string{"WARNING", "WARNING", "NOTICE", "INFO"} {
		if _, err := conn.Exec(ctx, "DO $$ BEGIN RAISE "+level+" 'careful: % %', 42, 'Notice-Pw-7'; END $$"); err != nil {
			t.Fatal(err)
		}
	}
	want := `PostgreSQL warns (session of role "` + role + `"): careful: 42 [redacted]`
	if got := sink.all(); len(got) != 1 || got[0] != want {
		t.Errorf("notes = %q, want [%q]", got, want)
	}
}

// TestMD5PasswordReplacedBySCRAM: a legacy role whose stored password is an
// MD5 hash (pg_hba.conf method md5, as such setups have) gets a SCRAM
// verifier from every path of a rotation, on every version, and rekey says
// so once. A non-superuser sees it from the server's request for md5
// authentication at a login as the role (the rotation's own logins); a
// superuser reads pg_authid. With method scram-sha-256 an MD5 password
// does not log in at all.
func TestMD5PasswordReplacedBySCRAM(t *testing.T) {
	super := superConn(t)
	major := testkit.Cluster(t).Major
	const legacy = "Legacy-Pw-1"
	wantNote := func(t *testing.T, sink *noteSink, role string) {
		t.Helper()
		notes := sink.all()
		if len(notes) != 1 || !strings.HasPrefix(notes[0], `role "`+role+`" had an MD5 password`) ||
			!strings.Contains(notes[0], "SCRAM-SHA-256 verifier now") {
			t.Fatalf("notes = %q, want one about role %s", notes, role)
		}
		if dep := strings.Contains(notes[0], "which PostgreSQL 18 deprecates"); dep != (major >= 18) {
			t.Errorf("PostgreSQL %d: note %q", major, notes[0])
		}
	}
	wantSCRAM := func(t *testing.T, role string, pw []byte) {
		t.Helper()
		if v := storedVerifier(t, super, role); !strings.HasPrefix(v, "SCRAM-SHA-256$") {
			t.Errorf("stored password of %s is %.6s..., not SCRAM", role, v)
		}
		if !mustTryLogin(t, role, pw) { // method md5 takes a SCRAM verifier through SCRAM
			t.Errorf("%s does not log in with its new password", role)
		}
	}

	t.Run("self", func(t *testing.T) {
		role := legacyMD5Role(t, super, "md5self", legacy)
		md5HBA(t, role)
		ctx, sink := notesCtx(t)
		conn, err := postgres.Connect(ctx, params(t, role, []byte(legacy)))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		if err := postgres.CheckSCRAM(ctx, conn); err != nil {
			t.Fatal(err)
		}
		if n := sink.all(); len(n) != 0 {
			t.Fatalf("notes at login: %q", n)
		}
		newPw := []byte("New-Pw-2")
		if err := postgres.SetPassword(ctx, conn, role, newPw); err != nil {
			t.Fatal(err)
		}
		wantNote(t, sink, role)
		wantSCRAM(t, role, newPw)
		if err := postgres.SetPassword(ctx, conn, role, []byte("New-Pw-3")); err != nil {
			t.Fatal(err)
		}
		wantNote(t, sink, role) // still once
	})

	t.Run("admin without pg_authid", func(t *testing.T) {
		role := legacyMD5Role(t, super, "md5adm", legacy)
		md5HBA(t, role)
		adminRole, adminPw := testkit.Unique("md5admin"), []byte("Admin-Pw-1")
		createLoginRole(t, super, adminRole, adminPw)
		mustExec(t, super, "ALTER ROLE "+postgres.QuoteIdent(adminRole)+" CREATEROLE")
		if major >= postgres.AdminOptionMajor {
			mustExec(t, super, "GRANT "+postgres.QuoteIdent(role)+" TO "+postgres.QuoteIdent(adminRole)+" WITH ADMIN OPTION, INHERIT FALSE, SET FALSE")
		}
		ctx, sink := notesCtx(t)
		admin, err := postgres.Connect(ctx, params(t, adminRole, adminPw))
		if err != nil {
			t.Fatal(err)
		}
		defer admin.Close(context.Background())
		var authid int
		if err := admin.QueryRow(ctx, "SELECT count(*) FROM pg_authid").Scan(&authid); !isPrivilegeErr(err) {
			t.Fatalf("a CREATEROLE role reads pg_authid on PostgreSQL %d: %v", major, err)
		}
		// The rotation first tries the new password (a crash after ALTER ROLE
		// leaves it applied): the server asks for md5, the login is refused.
		newPw := []byte("New-Pw-4")
		if ok, err := postgres.TryLogin(ctx, params(t, role, newPw)); ok || err != nil {
			t.Fatalf("TryLogin before the change: %v %v", ok, err)
		}
		if err := postgres.SetPassword(ctx, admin, role, newPw); err != nil {
			t.Fatal(err)
		}
		wantNote(t, sink, role)
		wantSCRAM(t, role, newPw)
	})

	t.Run("superuser reads pg_authid", func(t *testing.T) {
		role := legacyMD5Role(t, super, "md5super", legacy)
		ctx, sink := notesCtx(t)
		sp, err := postgres.ParseURL(testkit.Cluster(t).SuperConnString("postgres"))
		if err != nil {
			t.Fatal(err)
		}
		admin, err := postgres.Connect(ctx, sp)
		if err != nil {
			t.Fatal(err)
		}
		defer admin.Close(context.Background())
		// Method scram-sha-256 (the default here): the MD5 password logs in on no version.
		if mustTryLogin(t, role, []byte(legacy)) {
			t.Fatalf("PostgreSQL %d: an MD5 password logs in under scram-sha-256", major)
		}
		newPw := []byte("New-Pw-5")
		if err := postgres.SetPassword(ctx, admin, role, newPw); err != nil {
			t.Fatal(err)
		}
		wantNote(t, sink, role)
		wantSCRAM(t, role, newPw)
	})

	t.Run("applier", func(t *testing.T) {
		role := legacyMD5Role(t, super, "md5apply", legacy)
		md5HBA(t, role)
		c := testkit.Cluster(t)
		spec := &rekey.Spec{Name: "DATABASE_PASSWORD", Kind: rekey.KindPostgresPassword,
			Postgres: &rekey.PostgresSpec{Host: c.Host, Port: c.Port, Database: "postgres", Role: role, SSLMode: "disable"}}
		cur := rekey.VersionValue{Version: rekey.Version{N: 1}, Value: rekey.NewValueString(legacy)}
		pend := rekey.VersionValue{Version: rekey.Version{N: 2}, Value: rekey.NewValueString("Applied-Pw-6")}
		ctx, sink := notesCtx(t)
		a := &postgres.Applier{}
		if err := a.Apply(ctx, "dev", spec, pend, cur); err != nil {
			t.Fatal(err)
		}
		if err := a.Verify(ctx, "dev", spec, pend, cur); err != nil {
			t.Fatal(err)
		}
		wantNote(t, sink, role)
		wantSCRAM(t, role, []byte("Applied-Pw-6"))
	})

	t.Run("no note for a SCRAM role", func(t *testing.T) {
		pw := []byte("Scram-Pw-1")
		_, role := newLoginRole(t, "md5none", pw)
		md5HBA(t, role)
		ctx, sink := notesCtx(t)
		conn, err := postgres.Connect(ctx, params(t, role, pw))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		if err := postgres.SetPassword(ctx, conn, role, []byte("Scram-Pw-2")); err != nil {
			t.Fatal(err)
		}
		if n := sink.all(); len(n) != 0 {
			t.Errorf("notes = %q", n)
		}
	})
}

func isPrivilegeErr(err error) bool {
	var pgErr interface{ SQLState() string }
	return errors.As(err, &pgErr) && pgErr.SQLState() == "42501"
}
