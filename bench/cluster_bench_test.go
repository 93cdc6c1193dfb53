package bench

import (
	"context"
	"testing"
	"time"

	"github.com/rekeyhq/rekey/internal/pgtest"
	"github.com/rekeyhq/rekey/internal/testkit"
)

// durableSettings make a test cluster durable, as a production server
// (the test clusters run with fsync, synchronous_commit and
// full_page_writes off).
var durableSettings = []string{"ALTER SYSTEM SET fsync = on", "ALTER SYSTEM SET synchronous_commit = on", "ALTER SYSTEM SET full_page_writes = on"}

// benchCluster starts a throwaway cluster with statement logging off and
// settings applied (reloaded), and a database "bench".
func benchCluster(b *testing.B, settings ...string) *pgtest.Cluster {
	c := testkit.StartCluster(b)
	all := append([]string{"ALTER SYSTEM SET log_statement = 'none'"}, settings...)
	for _, s := range append(all, "SELECT pg_reload_conf()", "CREATE DATABASE bench") {
		if err := c.Exec(context.Background(), s); err != nil {
			b.Fatal(err)
		}
	}
	time.Sleep(200 * time.Millisecond) // the reload is asynchronous
	return c
}
