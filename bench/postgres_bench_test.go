package bench

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/rekeyhq/rekey/internal/pgtest"
	"github.com/rekeyhq/rekey/internal/postgres"
)

// pgProject is a project whose DATABASE_PASSWORD is the password of a login
// role of a throwaway cluster.
type pgProject struct {
	dir string
	env []string
}

// setupPostgres starts a cluster (stopped when the benchmark ends), creates
// a login role with a random password, writes a .env whose DATABASE_URL and
// DATABASE_PASSWORD hold it, and runs `rekey init`. With alternating, the
// role (rekey_bench_blue, CREATEROLE, member of the group role owning a
// table) gets its pair from `rekey init --postgres-alternating`. It skips
// when PostgreSQL is absent, unless REKEY_TEST_DISALLOW_SKIP=1.
func setupPostgres(b *testing.B, alternating bool) *pgProject {
	b.Helper()
	c, err := pgtest.Start()
	if errors.Is(err, pgtest.ErrUnavailable) {
		if os.Getenv(pgtest.DisallowSkipEnv) == "1" {
			b.Fatalf("%v; %s=1 forbids skipping", err, pgtest.DisallowSkipEnv)
		}
		b.Skip(err)
	}
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := c.Stop(); err != nil {
			b.Error(err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	role := "rekey_bench"
	pwb := make([]byte, 24)
	rand.Read(pwb)
	pw := base64.RawURLEncoding.EncodeToString(pwb)
	stmts := []string{"CREATE ROLE " + role + " LOGIN"}
	if alternating {
		role = "rekey_bench_blue"
		stmts = []string{"CREATE ROLE rekey_bench_owner NOLOGIN", "CREATE TABLE bench_t (x int)", "ALTER TABLE bench_t OWNER TO rekey_bench_owner",
			"CREATE ROLE " + role + " LOGIN CREATEROLE IN ROLE rekey_bench_owner"}
	}
	for _, s := range stmts {
		if err := c.Exec(ctx, s); err != nil {
			b.Fatal(err)
		}
	}
	su, err := postgres.ParseURL(c.SuperConnString("postgres"))
	if err != nil {
		b.Fatal(err)
	}
	conn, err := postgres.Connect(ctx, su)
	if err != nil {
		b.Fatal(err)
	}
	err = postgres.SetPassword(ctx, conn, role, []byte(pw))
	conn.Close(ctx)
	if err != nil {
		b.Fatal(err)
	}

	dir := b.TempDir()
	key := make([]byte, 32)
	rand.Read(key)
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "REKEY_") || strings.HasPrefix(kv, "XDG_CONFIG_HOME=") {
			continue
		}
		env = append(env, kv)
	}
	env = append(env,
		"REKEY_MASTER_KEY="+base64.StdEncoding.EncodeToString(key),
		"XDG_CONFIG_HOME="+b.TempDir(),
		"REKEY_ACTOR=bench",
	)
	dotenv := "DATABASE_URL=" + c.ConnString(role, pw, "postgres") + "\n" +
		"DATABASE_PASSWORD=" + pw + "\n"
	if err := os.WriteFile(filepath.Join(dir, ".env"), []byte(dotenv), 0o600); err != nil {
		b.Fatal(err)
	}
	p := &pgProject{dir: dir, env: env}
	if alternating {
		p.run(b, "init", "--env-file", ".env", "--postgres-alternating")
	} else {
		p.run(b, "init", "--env-file", ".env")
	}
	return p
}

func (p *pgProject) run(b *testing.B, args ...string) time.Duration {
	b.Helper()
	cmd := exec.Command(binary(b), args...)
	cmd.Dir = p.dir
	cmd.Env = p.env
	t0 := time.Now()
	out, err := cmd.CombinedOutput()
	d := time.Since(t0)
	if err != nil {
		b.Fatalf("rekey %v: %v\n%s", args, err, out)
	}
	return d
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
	p := setupPostgres(b, alternating)
	var times []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		times = append(times, p.run(b, "rotate", "DATABASE_PASSWORD"))
	}
	b.StopTimer()
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	b.ReportMetric(float64(times[len(times)/2].Microseconds())/1000, "ms-median")
	b.ReportMetric(float64(times[len(times)-1].Microseconds())/1000, "ms-max")
}
