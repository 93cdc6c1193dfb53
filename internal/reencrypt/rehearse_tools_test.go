package reencrypt

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/pgtest"
)

// dumpRefused reports whether this machine has no pg_dump able to dump
// the test server (the distribution's client tools are PostgreSQL 15; the
// matrix also runs 16, 17 and 18), and then checks that err, the
// rehearsal's on the pg_dump path, says so: which pg_dump, which server,
// why the copy on the server was not possible and the way around it
// (hintWant), and that no copy was left behind.
func dumpRefused(t *testing.T, c *pgtest.Cluster, err error, hintWant string) bool {
	t.Helper()
	if _, _, ferr := findDumpTools("", c.Major); ferr == nil {
		return false
	}
	var re *rekey.Error
	if !errors.As(err, &re) || re.Code != rekey.CodeNotFound {
		t.Fatalf("PostgreSQL %d with no pg_dump that can dump it: want a not-found refusal, got %v", c.Major, err)
	}
	msg := re.Error()
	if !strings.Contains(msg, "PostgreSQL "+strconv.Itoa(c.Major)) || !strings.Contains(msg, "CREATE DATABASE ... TEMPLATE") ||
		!strings.Contains(re.Hint, hintWant) || !strings.Contains(re.Hint, "postgresql-client-"+strconv.Itoa(c.Major)) {
		t.Fatalf("the refusal does not name the server's version, the reason and the way around it:\n%s\nhint: %s", msg, re.Hint)
	}
	if n := countCopiesOn(t, c); n != 0 {
		t.Fatalf("%d rehearsal databases left", n)
	}
	t.Logf("PostgreSQL %s: %s (hint: %s)", c.Version, msg, re.Hint)
	return true
}

// TestDumpToolsTooOld: with only older client tools than the server,
// findDumpTools names the pg_dump it found, its version and the server's.
func TestDumpToolsTooOld(t *testing.T) {
	_, _, err := findDumpTools("", 99)
	if err == nil {
		t.Fatal("a pg_dump of PostgreSQL 99 or later was found")
	}
	var re *rekey.Error
	if !errors.As(err, &re) || re.Code != rekey.CodeNotFound {
		t.Fatalf("want a not-found error, got %v", err)
	}
	if _, _, err15 := findDumpTools("", 1); err15 == nil { // some pg_dump is installed
		if !strings.Contains(err.Error(), "cannot dump a PostgreSQL 99 server") || !strings.Contains(err.Error(), "pg_dump ") {
			t.Fatalf("the error does not name the pg_dump found and the server: %v", err)
		}
	} else if !strings.Contains(err.Error(), "no pg_dump and pg_restore found") {
		t.Fatalf("no pg_dump installed: %v", err)
	}
}

// countCopiesOn counts the rehearsal databases on c.
func countCopiesOn(t *testing.T, c *pgtest.Cluster) int {
	t.Helper()
	admin, err := c.Connect(testCtx(t), "")
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	var n int
	if err := admin.QueryRow(testCtx(t), `SELECT count(*) FROM pg_database WHERE datname LIKE 'rekey_rehearsal_%'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
