package bench

import (
	"encoding/base64"
	"path/filepath"
	"testing"

	"github.com/rekeyhq/rekey/internal/demo/atlasdemo"
	"github.com/rekeyhq/rekey/internal/testkit"
)

// setupPostgres starts a cluster (stopped when the benchmark ends), creates
// a login role with a random password, writes a .env whose DATABASE_URL and
// DATABASE_PASSWORD hold it, and runs `rekey init`. With alternating, the
// role (rekey_bench_blue, CREATEROLE, member of the group role owning a
// table) gets its pair from `rekey init --postgres-alternating`. It skips
// when PostgreSQL is absent, unless REKEY_TEST_DISALLOW_SKIP=1.
func setupPostgres(b *testing.B, alternating bool) *project {
	b.Helper()
	c := testkit.StartCluster(b)
	role := "rekey_bench"
	pw := atlasdemo.Random(24, base64.RawURLEncoding)
	stmts := []string{"CREATE ROLE " + role + " LOGIN"}
	if alternating {
		role = "rekey_bench_blue"
		stmts = []string{"CREATE ROLE rekey_bench_owner NOLOGIN", "CREATE TABLE bench_t (x int)", "ALTER TABLE bench_t OWNER TO rekey_bench_owner",
			"CREATE ROLE " + role + " LOGIN CREATEROLE IN ROLE rekey_bench_owner"}
	}
	testkit.Exec(b, c, stmts...)
	testkit.SetPassword(b, c.SuperConnString("postgres"), role, pw)

	p := &project{dir: b.TempDir(), env: testkit.CleanEnv(
		"REKEY_MASTER_KEY="+atlasdemo.Random(32, base64.StdEncoding),
		"XDG_CONFIG_HOME="+b.TempDir(),
		"REKEY_ACTOR=bench",
	)}
	testkit.WriteFile(b, filepath.Join(p.dir, ".env"), "DATABASE_URL="+c.ConnString(role, pw, "postgres")+"\n"+
		"DATABASE_PASSWORD="+pw+"\n", 0o600)
	init := []string{"init", "--env-file", ".env"}
	if alternating {
		init = append(init, "--postgres-alternating")
	}
	p.run(b, init...)
	return p
}

// BenchmarkRotatePostgres times `rekey rotate DATABASE_PASSWORD` against a
// real cluster (whole process: open, lock, recover, create, ALTER ROLE with
// a SCRAM verifier, log in with the new password and be refused with the
// old, publish the password and DATABASE_URL to the .env, verify, finish).
func BenchmarkRotatePostgres(b *testing.B) { benchRotatePostgres(b, false) }

// BenchmarkRotatePostgresAlternating is BenchmarkRotatePostgres with the
// alternating strategy: the current role (CREATEROLE) sets the idle one's
// password; verify logs in as the new role and runs a query, and checks
// that the old role still logs in.
func BenchmarkRotatePostgresAlternating(b *testing.B) { benchRotatePostgres(b, true) }

func benchRotatePostgres(b *testing.B, alternating bool) {
	binary(b)
	times := timeRuns(b, setupPostgres(b, alternating), func(int) []string { return []string{"rotate", "DATABASE_PASSWORD"} })
	b.StopTimer()
	reportTimes(b, times)
}
