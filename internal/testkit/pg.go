package testkit

import (
	"errors"
	"os"
	"testing"
	"time"

	"github.com/rekeyhq/rekey/internal/pgcluster"
	"github.com/rekeyhq/rekey/internal/pgtest"
	"github.com/rekeyhq/rekey/internal/postgres"
)

// StartCluster starts a throwaway cluster for one test or benchmark (a
// package whose tests share one starts it in TestMain: pgtest.Main) and
// stops it when the test ends. It skips when PostgreSQL is absent, unless
// REKEY_TEST_DISALLOW_SKIP=1.
func StartCluster(tb testing.TB) *pgtest.Cluster {
	tb.Helper()
	c, err := pgtest.Start()
	if errors.Is(err, pgtest.ErrUnavailable) {
		if os.Getenv(DisallowSkipEnv) == "1" {
			tb.Fatalf("%v; %s=1 forbids skipping", err, DisallowSkipEnv)
		}
		tb.Skip(err)
	}
	if err != nil {
		tb.Fatal(err)
	}
	pgtest.Note(tb, c)
	tb.Cleanup(func() {
		if err := c.Stop(); err != nil {
			tb.Error(err)
		}
	})
	return c
}

// SetPassword logs in with url and sets role's password to pw with a SCRAM
// verifier computed here (the password never reaches the server's log).
func SetPassword(tb testing.TB, url, role, pw string) {
	tb.Helper()
	ctx := Ctx(tb, 30*time.Second)
	p, err := postgres.ParseURL(url)
	if err != nil {
		tb.Fatal(err)
	}
	conn, err := postgres.Connect(ctx, p)
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close(ctx)
	if err := postgres.SetPassword(ctx, conn, role, []byte(pw)); err != nil {
		tb.Fatal(err)
	}
}

// Exec runs statements as the cluster's superuser.
func Exec(tb testing.TB, c *pgtest.Cluster, stmts ...string) {
	tb.Helper()
	for _, s := range stmts {
		if err := c.Exec(Ctx(tb, time.Minute), s); err != nil {
			tb.Fatalf("%s: %v", s, err)
		}
	}
}

// LogsIn reports whether url logs in (false when the server refuses the
// password; any other error fails the test).
func LogsIn(tb testing.TB, url string) bool {
	tb.Helper()
	p, err := postgres.ParseURL(url)
	if err != nil {
		tb.Fatal(err)
	}
	ok, err := postgres.TryLogin(Ctx(tb, 30*time.Second), p)
	if err != nil {
		tb.Fatalf("login as %s: %v", p.User, err)
	}
	return ok
}

var shared *pgtest.Cluster

// Main is the TestMain of a package whose tests share one throwaway
// cluster (pgtest.Main): `func TestMain(m *testing.M) { testkit.Main(m) }`.
// It does not return.
func Main(m *testing.M) { os.Exit(pgtest.Main(m, &shared)) }

// Cluster is the cluster Main started; without one (PostgreSQL absent) the
// test is skipped, or fails under REKEY_TEST_DISALLOW_SKIP=1.
func Cluster(tb testing.TB) *pgtest.Cluster {
	tb.Helper()
	return pgtest.Need(tb, shared)
}

// RepeatEnv names an environment variable that scripts/test sets to 1 when
// it runs the PostgreSQL tests again against another major version than
// the first of its matrix (REKEY_TEST_PG_VERSIONS).
const RepeatEnv = "REKEY_TEST_PG_REPEAT"

// KillBudget is how long a loop of kill -9 at random moments runs against
// a cluster: d on the first major of the version matrix (and outside it),
// a sixth of d when the test repeats on another major (RepeatEnv). Each
// major still runs the loop, and the crash matrices kill at every step
// boundary on each major; the long random search runs once.
func KillBudget(d time.Duration) time.Duration {
	if Repeating() {
		return d / 6
	}
	return d
}

// Repeating says whether the test runs again against another major than
// the first of the version matrix (RepeatEnv): a long schedule may then
// keep the part that covers every kind of step once.
func Repeating() bool { return os.Getenv(RepeatEnv) == "1" }

// UseClusterTemplates makes every later StartCluster of this test binary
// copy the output of one initdb per PostgreSQL version instead of running
// initdb itself (pgcluster.UseTemplates); the returned func removes the
// templates. For a TestMain whose tests start many clusters.
func UseClusterTemplates() (remove func()) {
	pgcluster.UseTemplates()
	return pgcluster.RemoveTemplates
}
