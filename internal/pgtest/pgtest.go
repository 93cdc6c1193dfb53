// Package pgtest runs a throwaway PostgreSQL cluster for tests (see
// internal/pgcluster for the cluster itself).
//
// One cluster is started per test binary from TestMain:
//
//	var cluster *pgtest.Cluster
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m, &cluster)) }
//
//	func TestSomething(t *testing.T) {
//		c := pgtest.Need(t, cluster)
//		...
//	}
//
// The cluster listens on 127.0.0.1 on a free port, requires scram-sha-256
// for every connection and logs every statement (log_statement=all) to
// LogFile, so tests can check that no secret reaches the server log.
package pgtest

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"github.com/rekeyhq/rekey/internal/pgcluster"
)

// Cluster is a running throwaway cluster.
type Cluster = pgcluster.Cluster

// The cluster package's names, for tests.
var (
	Start          = pgcluster.Start
	ErrUnavailable = pgcluster.ErrUnavailable
)

// Settings of the cluster package.
const (
	DisallowSkipEnv = pgcluster.DisallowSkipEnv
	BinDirEnv       = pgcluster.BinDirEnv
	DefaultHBA      = pgcluster.DefaultHBA
	RecordEnv       = pgcluster.RecordEnv
)

var (
	skipReason string
	started    bool
)

// Main is a TestMain helper: it starts a cluster, stores it in *c, runs
// the tests and stops the cluster. When PostgreSQL is unavailable on this
// machine, the tests run with *c == nil and Need skips them (or fails them
// under REKEY_TEST_DISALLOW_SKIP=1). Any other startup problem fails the
// test binary. Use as os.Exit(pgtest.Main(m, &cluster)).
func Main(m *testing.M, c **Cluster) int {
	flag.Parse()
	started = true
	t0 := time.Now()
	cl, err := Start()
	switch {
	case errors.Is(err, ErrUnavailable):
		skipReason = err.Error()
		*c = nil
		if os.Getenv(DisallowSkipEnv) == "1" {
			fmt.Fprintf(os.Stderr, "%v (and %s=1)\n", err, DisallowSkipEnv)
		}
		return m.Run()
	case err != nil:
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if testing.Verbose() {
		fmt.Fprintf(os.Stderr, "pgtest: PostgreSQL %s on %s started in %s (dir %s)\n", cl.Version, fmt.Sprintf("%s:%d", cl.Host, cl.Port), time.Since(t0).Round(time.Millisecond), cl.Dir)
	}
	*c = cl
	// On ^C or SIGTERM, stop the cluster before dying. (If the binary dies
	// any other way, the postmaster gets SIGKILL and the directory is swept
	// by a later Start.)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		sig, ok := <-sigs
		if !ok {
			return
		}
		_ = cl.Stop()
		fmt.Fprintf(os.Stderr, "pgtest: %v: cluster stopped\n", sig)
		os.Exit(2)
	}()
	code := m.Run()
	signal.Stop(sigs)
	close(sigs)
	if err := cl.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// Need returns c, or skips the test when there is no cluster — unless
// REKEY_TEST_DISALLOW_SKIP=1 is set, in which case the test fails.
func Need(t testing.TB, c *Cluster) *Cluster {
	t.Helper()
	if c != nil {
		Note(t, c)
		return c
	}
	reason := skipReason
	if reason == "" {
		if started {
			reason = "pgtest: no cluster"
		} else {
			reason = "pgtest: no cluster (TestMain does not call pgtest.Main)"
		}
	}
	if os.Getenv(DisallowSkipEnv) == "1" {
		t.Fatalf("%s; %s=1 forbids skipping", reason, DisallowSkipEnv)
	}
	t.Skip(reason)
	return nil
}

// Note records that test t uses cluster c (pgcluster.RecordEnv: how
// scripts/test runs every PostgreSQL test once per major version) and, the
// first time for its top-level test, logs the server's version (shown by
// go test -v and with a failure).
func Note(t testing.TB, c *Cluster) {
	t.Helper()
	if c.RecordTest(t.Name()) {
		t.Logf("PostgreSQL %s (%s)", c.Version, c.BinDir())
	}
}

// Eventually calls f until it returns nil, for up to 5 seconds (a
// pg_hba.conf change, say, takes effect when the server reloads), and fails
// the test with f's last error if it never does.
func Eventually(t testing.TB, f func() error) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
