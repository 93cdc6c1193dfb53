package postgres_test

import (
	"context"
	"encoding/base64"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rekeyhq/rekey/internal/postgres"
	"github.com/rekeyhq/rekey/internal/testkit"
)

func TestMain(m *testing.M) { testkit.Main(m) }

func testCtx(t testing.TB) context.Context { return testkit.Ctx(t, 30*time.Second) }

// superConn is a superuser session on the test cluster, closed at cleanup.
func superConn(t testing.TB) *pgx.Conn {
	t.Helper()
	c := testkit.Cluster(t)
	conn, err := c.Connect(testCtx(t), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func mustExec(t testing.TB, conn *pgx.Conn, sql string, args ...any) {
	t.Helper()
	if _, err := conn.Exec(testCtx(t), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// params are connection parameters for role/password on the test cluster.
func params(t testing.TB, role string, pw []byte) postgres.Params {
	c := testkit.Cluster(t)
	return postgres.Params{Host: c.Host, Port: c.Port, Database: "postgres", User: role, Password: pw, SSLMode: "disable"}
}

// createLoginRole creates a LOGIN role (no special attributes) and sets its
// password with postgres.SetPassword through a superuser connection.
func createLoginRole(t testing.TB, admin *pgx.Conn, role string, pw []byte) {
	t.Helper()
	mustExec(t, admin, "CREATE ROLE "+postgres.QuoteIdent(role)+" LOGIN")
	if err := postgres.SetPassword(testCtx(t), admin, role, pw); err != nil {
		t.Fatal(err)
	}
}

// newLoginRole creates a fresh login role, named after prefix, with
// password pw, and returns the superuser session that made it and the role.
func newLoginRole(t testing.TB, prefix string, pw []byte) (*pgx.Conn, string) {
	t.Helper()
	admin := superConn(t)
	role := testkit.Unique(prefix)
	createLoginRole(t, admin, role, pw)
	return admin, role
}

// login connects as role with pw, or fails the test.
func login(t testing.TB, role string, pw []byte) *pgx.Conn {
	t.Helper()
	conn, err := postgres.Connect(testCtx(t), params(t, role, pw))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// storedVerifier reads rolpassword from pg_authid.
func storedVerifier(t testing.TB, admin *pgx.Conn, role string) string {
	t.Helper()
	var v *string
	if err := admin.QueryRow(testCtx(t), "SELECT rolpassword FROM pg_authid WHERE rolname = $1", role).Scan(&v); err != nil {
		t.Fatal(err)
	}
	if v == nil {
		t.Fatalf("role %q has no password", role)
	}
	return *v
}

// parseVerifier extracts iterations and salt from a SCRAM verifier.
func parseVerifier(t testing.TB, v string) (int, []byte) {
	t.Helper()
	rest, ok := strings.CutPrefix(v, "SCRAM-SHA-256$")
	if !ok {
		t.Fatalf("not a SCRAM verifier: %.20s...", v)
	}
	iterSalt, _, _ := strings.Cut(rest, "$")
	iter, salt64, _ := strings.Cut(iterSalt, ":")
	n, err := strconv.Atoi(iter)
	if err != nil {
		t.Fatal(err)
	}
	salt, err := base64.StdEncoding.DecodeString(salt64)
	if err != nil {
		t.Fatal(err)
	}
	return n, salt
}
