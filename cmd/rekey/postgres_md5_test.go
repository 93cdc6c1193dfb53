package main

// A role whose stored password is an MD5 hash (the legacy setup, pg_hba.conf
// method md5), end to end: `rekey rotate` replaces it by a SCRAM verifier and
// says so once on stderr as a warning.

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rekeyhq/rekey/internal/pgtest"
	"github.com/rekeyhq/rekey/internal/postgres"
	"github.com/rekeyhq/rekey/internal/testkit"
)

// TestPostgresRotateMD5Password: the superuser stores the project's role
// password as an MD5 hash (18 warns about it), pg_hba.conf lets that role
// log in with method md5; `rekey rotate DATABASE_PASSWORD` succeeds, stderr
// has `rekey: warning: role "x" had an MD5 password …` exactly once, the
// stored password is a SCRAM verifier now, the new password logs in, and
// neither password appears in any output.
func TestPostgresRotateMD5Password(t *testing.T) {
	c := startCluster(t)
	p := pgcNewProject(t, c)
	old := p.value(1)
	q := postgres.QuoteIdent

	// method md5 for the role (a SCRAM verifier still logs in through it).
	if err := c.SetHBA("host all "+q(p.role)+" 127.0.0.1/32 md5", pgtest.DefaultHBA); err != nil {
		t.Fatal(err)
	}
	// What SET password_encryption = 'md5'; ALTER ROLE ... PASSWORD 'old'
	// stores, given as the hash so the password never reaches the server log.
	sum := md5.Sum([]byte(old + p.role))
	super, ctx := md5SuperConn(t, c)
	for _, s := range []string{"SET password_encryption = 'md5'", "ALTER ROLE " + q(p.role) + " PASSWORD 'md5" + hex.EncodeToString(sum[:]) + "'"} {
		if _, err := super.Exec(ctx, s); err != nil {
			t.Fatalf("PostgreSQL %d: %s: %v", c.Major, strings.Fields(s)[0], err)
		}
	}
	if v := md5StoredPassword(t, c, p.role); !strings.HasPrefix(v, "md5") {
		t.Fatalf("stored password of %s is %.6s..., not an MD5 hash", p.role, v)
	}
	if !p.logsIn(old) {
		t.Fatalf("PostgreSQL %d: the MD5 password does not log in with method md5", c.Major)
	}

	r := p.run("rotate", "DATABASE_PASSWORD")
	if r.code != 0 || r.sig != 0 {
		t.Fatalf("PostgreSQL %d: rotate of an MD5 password: %v", c.Major, r)
	}
	warn := `rekey: warning: role "` + p.role + `" had an MD5 password`
	if n := strings.Count(r.stderr, warn); n != 1 {
		t.Fatalf("PostgreSQL %d: stderr has %q %d times, want once:\n%s", c.Major, warn, n, r.stderr)
	}
	if n := strings.Count(r.stderr, "had an MD5 password"); n != 1 {
		t.Fatalf("PostgreSQL %d: stderr mentions the MD5 password %d times:\n%s", c.Major, n, r.stderr)
	}
	line := md5LineWith(r.stderr, warn)
	if dep := strings.Contains(line, "which PostgreSQL 18 deprecates"); dep != (c.Major >= 18) {
		t.Errorf("PostgreSQL %d: warning %q", c.Major, line)
	}
	if strings.Contains(r.stderr, "MD5-encrypted") || strings.Contains(r.stdout, "MD5-encrypted") {
		t.Errorf("PostgreSQL %d: a raw server warning reached the output:\n%s", c.Major, r.stderr)
	}
	t.Logf("PostgreSQL %d: %s", c.Major, line)

	if v := md5StoredPassword(t, c, p.role); !strings.HasPrefix(v, "SCRAM-SHA-256$") {
		t.Fatalf("PostgreSQL %d: stored password of %s after rotate is %.6s..., not SCRAM", c.Major, p.role, v)
	}
	cur := p.current()
	if cur == old || !p.logsIn(cur) || p.logsIn(old) {
		t.Fatalf("PostgreSQL %d: after rotate the new password does not log in, or the old one still does", c.Major)
	}
	for _, v := range []string{old, cur} {
		if strings.Contains(r.stdout, v) || strings.Contains(r.stderr, v) {
			t.Fatalf("PostgreSQL %d: a password appears in the output of rotate", c.Major)
		}
	}
}

// md5SuperConn is a superuser session on c, closed at cleanup.
func md5SuperConn(t *testing.T, c *pgtest.Cluster) (*pgx.Conn, context.Context) {
	t.Helper()
	ctx := testkit.Ctx(t, 30*time.Second)
	conn, err := c.Connect(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn, ctx
}

// md5StoredPassword is role's pg_authid.rolpassword, read by the superuser.
func md5StoredPassword(t *testing.T, c *pgtest.Cluster, role string) string {
	t.Helper()
	conn, ctx := md5SuperConn(t, c)
	var v *string
	if err := conn.QueryRow(ctx, "SELECT rolpassword FROM pg_authid WHERE rolname = $1", role).Scan(&v); err != nil {
		t.Fatal(err)
	}
	if v == nil {
		t.Fatalf("role %s has no password", role)
	}
	return *v
}

// md5LineWith is the first line of s containing sub.
func md5LineWith(s, sub string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			return l
		}
	}
	return ""
}
