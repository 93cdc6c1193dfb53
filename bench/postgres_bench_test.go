package bench

import (
	"context"
	"encoding/base64"
	"path/filepath"
	"testing"
	"time"

	"github.com/rekeyhq/rekey/internal/demo/atlasdemo"
	"github.com/rekeyhq/rekey/internal/pgtest"
	"github.com/rekeyhq/rekey/internal/postgres"
	"github.com/rekeyhq/rekey/internal/testkit"
)

// setupPostgres starts a cluster (stopped when the benchmark ends), creates
// a login role with a random password, writes a .env whose DATABASE_URL and
// DATABASE_PASSWORD hold it, and runs `rekey init`. With alternating, the
// role (rekey_bench_blue, member of the group role owning a table) gets its
// pair from `rekey init --postgres-alternating`, with the least privilege
// the server's version needs (README's privilege table): on PostgreSQL 15
// the role has CREATEROLE and changes the idle role's password itself
// (changed_by: self); on 16 and later, where the roles of a pair cannot
// change each other's password, an admin role (rekey_bench_admin:
// CREATEROLE, ADMIN OPTION on the group and the role) does, its URL the
// .env's PG_ADMIN_URL (changed_by: admin). It skips when PostgreSQL is
// absent, unless REKEY_TEST_DISALLOW_SKIP=1.
func setupPostgres(b *testing.B, alternating bool) *project {
	b.Helper()
	c := testkit.StartCluster(b)
	role := "rekey_bench"
	pw := atlasdemo.Random(24, base64.RawURLEncoding)
	stmts := []string{"CREATE ROLE " + role + " LOGIN"}
	admin, adminPW := "", ""
	if alternating {
		role = "rekey_bench_blue"
		attrs := "LOGIN CREATEROLE"
		if major := serverMajor(b, c); major >= postgres.AdminOptionMajor {
			b.Logf("PostgreSQL %d: the pair is managed by rekey_bench_admin (changed_by: admin), as 16 and later require", major)
			attrs, admin, adminPW = "LOGIN", "rekey_bench_admin", atlasdemo.Random(24, base64.RawURLEncoding)
		}
		stmts = []string{"CREATE ROLE rekey_bench_owner NOLOGIN", "CREATE TABLE bench_t (x int)", "ALTER TABLE bench_t OWNER TO rekey_bench_owner",
			"CREATE ROLE " + role + " " + attrs + " IN ROLE rekey_bench_owner"}
		if admin != "" {
			stmts = append(stmts, atlasdemo.AdminStatements(admin, "rekey_bench_owner", role)...)
		}
	}
	testkit.Exec(b, c, stmts...)
	testkit.SetPassword(b, c.SuperConnString("postgres"), role, pw)
	env := "DATABASE_URL=" + c.ConnString(role, pw, "postgres") + "\n" + "DATABASE_PASSWORD=" + pw + "\n"
	if admin != "" {
		testkit.SetPassword(b, c.SuperConnString("postgres"), admin, adminPW)
		env += atlasdemo.AdminURLKey + "=" + c.ConnString(admin, adminPW, "postgres") + "\n"
	}

	p := &project{dir: b.TempDir(), env: testkit.CleanEnv(
		"REKEY_MASTER_KEY="+atlasdemo.Random(32, base64.StdEncoding),
		"XDG_CONFIG_HOME="+b.TempDir(),
		"REKEY_ACTOR=bench",
	)}
	testkit.WriteFile(b, filepath.Join(p.dir, ".env"), env, 0o600)
	init := []string{"init", "--env-file", ".env"}
	if alternating {
		init = append(init, "--postgres-alternating")
	}
	p.run(b, init...)
	return p
}

// serverMajor is the major version the cluster's server reports
// (server_version_num).
func serverMajor(b *testing.B, c *pgtest.Cluster) int {
	b.Helper()
	ctx := testkit.Ctx(b, 30*time.Second)
	conn, err := c.Connect(ctx, "")
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(context.Background())
	num, err := postgres.ServerVersionNum(ctx, conn)
	if err != nil {
		b.Fatal(err)
	}
	return num / 10000
}

// BenchmarkRotatePostgres times `rekey rotate DATABASE_PASSWORD` against a
// real cluster (whole process: open, lock, recover, create, ALTER ROLE with
// a SCRAM verifier, log in with the new password and be refused with the
// old, publish the password and DATABASE_URL to the .env, verify, finish).
func BenchmarkRotatePostgres(b *testing.B) { benchRotatePostgres(b, false) }

// BenchmarkRotatePostgresAlternating is BenchmarkRotatePostgres with the
// alternating strategy: the current role (CREATEROLE; on PostgreSQL 16 and
// later the admin role of PG_ADMIN_URL) sets the idle one's password; verify logs in as the new role and runs a query, and checks
// that the old role still logs in.
func BenchmarkRotatePostgresAlternating(b *testing.B) { benchRotatePostgres(b, true) }

func benchRotatePostgres(b *testing.B, alternating bool) {
	binary(b)
	times := timeRuns(b, setupPostgres(b, alternating), func(int) []string { return []string{"rotate", "DATABASE_PASSWORD"} })
	b.StopTimer()
	reportTimes(b, times)
}
