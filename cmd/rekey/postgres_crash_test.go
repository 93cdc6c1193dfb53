package main

// Crash-safety of a DATABASE_PASSWORD rotation against a real PostgreSQL
// cluster: the real binary is killed (SIGKILL) at every fault point of the
// rotation (and of the rollback that recovery runs), and at random moments;
// after each, `rekey recover` must leave the role's password, the store and
// the .env in agreement, with no moment where no stored password logs in.

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rekeyhq/rekey/internal/engine"
	"github.com/rekeyhq/rekey/internal/pgtest"
	"github.com/rekeyhq/rekey/internal/postgres"
	"github.com/rekeyhq/rekey/internal/testkit"
)

// pgcProject is a project whose DATABASE_PASSWORD is the password of its own
// login role in a shared cluster.
type pgcProject struct {
	*ctProject
	c    *pgtest.Cluster
	role string
	// vals caches the value of every version seen (versions never change).
	vals map[int]string
}

var pgcRoleSeq atomic.Int64

// pgcNewProject creates a login role with a random password, writes a .env
// whose DATABASE_URL and DATABASE_PASSWORD hold it, and runs `rekey init`.
func pgcNewProject(t *testing.T, c *pgtest.Cluster) *pgcProject {
	t.Helper()
	role := fmt.Sprintf("rekey_crash_%d_%d", os.Getpid(), pgcRoleSeq.Add(1))
	pw := ctRandB64(24, base64.RawURLEncoding)
	testkit.Exec(t, c, "CREATE ROLE "+role+" LOGIN")
	testkit.SetPassword(t, c.SuperConnString("postgres"), role, pw)
	dir := t.TempDir()
	cp := ctInitProject(t, dir, ".env", "pg-crash-test", "# comment\n"+
		"DATABASE_URL="+c.ConnString(role, pw, "postgres")+"\n"+
		"DATABASE_PASSWORD="+pw+"\n"+
		"RUST_LOG=info\n")
	cfg, err := os.ReadFile(dir + "/rekey.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(cfg), "kind: postgres-password") || !strings.Contains(string(cfg), "url_from: DATABASE_URL") {
		t.Fatalf("init did not make DATABASE_PASSWORD a postgres-password with url_from: DATABASE_URL:\n%s", cfg)
	}
	p := &pgcProject{ctProject: cp, c: c, role: role, vals: map[int]string{}}
	if got := p.value(1); got != pw {
		t.Fatalf("v1 of DATABASE_PASSWORD is not the .env's password")
	}
	return p
}

// value returns DATABASE_PASSWORD vn (cached).
func (p *pgcProject) value(n int) string {
	p.t.Helper()
	if v, ok := p.vals[n]; ok {
		return v
	}
	v := p.must("get", "DATABASE_PASSWORD", "-n", "--version", strconv.Itoa(n))
	if v == "" {
		p.t.Fatalf("DATABASE_PASSWORD v%d is empty", n)
	}
	p.vals[n] = v
	return v
}

// current returns `rekey get DATABASE_PASSWORD` (not cached).
func (p *pgcProject) current() string {
	p.t.Helper()
	return p.must("get", "DATABASE_PASSWORD", "-n")
}

// history parses `rekey history DATABASE_PASSWORD`.
func (p *pgcProject) history() []ctHistRow { return p.historyOf("DATABASE_PASSWORD") }

// logsIn reports whether pw logs in as the project's role.
func (p *pgcProject) logsIn(pw string) bool {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pp, err := postgres.ParseURL(p.c.ConnString(p.role, pw, "postgres"))
	if err != nil {
		p.t.Fatal(err)
	}
	ok, err := postgres.TryLogin(ctx, pp)
	if err != nil {
		p.t.Fatalf("login as %s: %v", p.role, err)
	}
	return ok
}

// someStoredLogsIn checks, at any moment (also right after a kill, before
// recovery), that at least one stored version of DATABASE_PASSWORD logs in.
// It tries the likely ones first (prefer: version numbers), then the rest.
func (p *pgcProject) someStoredLogsIn(when string, prefer ...int) int {
	p.t.Helper()
	rows := p.history()
	tried := map[int]bool{}
	try := func(n int) bool {
		if tried[n] {
			return false
		}
		tried[n] = true
		return p.logsIn(p.value(n))
	}
	for _, n := range prefer {
		if _, ok := ctRowN(rows, n); ok && try(n) {
			return n
		}
	}
	for i := len(rows) - 1; i >= 0; i-- {
		if try(rows[i].N) {
			return rows[i].N
		}
	}
	p.t.Fatalf("%s: no stored version of DATABASE_PASSWORD logs in as %s (history %+v)", when, p.role, rows)
	return 0
}

// ctState is what the consistency check found.
// consistent runs `rekey recover` and checks: it exits 0; exactly one
// current version and no pending one; the role logs in with the store's
// current value and with no other stored version; the .env's
// DATABASE_PASSWORD is that value and its DATABASE_URL embeds it and logs
// in; every value in known (version → value) is still in history; the
// audit chain verifies.
func (p *pgcProject) consistent(known map[int]string) ctState {
	p.t.Helper()
	s := ctState{recover: p.recoverOK()}
	s.rows = p.history()
	s.cur = ctOneCurrent(p.t, s.rows)
	s.val = p.current()
	if s.val != p.value(s.cur) {
		p.t.Fatalf("get DATABASE_PASSWORD differs from get --version %d", s.cur)
	}
	if !p.logsIn(s.val) {
		p.t.Fatalf("the store's current DATABASE_PASSWORD v%d does not log in as %s (recover said:\n%s%s)", s.cur, p.role, s.recover.stdout, s.recover.stderr)
	}
	// single strategy: the role has one password; every other stored version is refused.
	for _, r := range s.rows {
		if r.N != s.cur && p.logsIn(p.value(r.N)) {
			p.t.Fatalf("DATABASE_PASSWORD v%d (%q) still logs in besides the current v%d", r.N, r.Label, s.cur)
		}
	}
	data := p.readEnv()
	envPW, ok := ctEnvValue(data, "DATABASE_PASSWORD")
	if !ok || envPW != s.val {
		p.t.Fatalf("the .env's DATABASE_PASSWORD is not the store's current value (recover said:\n%s)", s.recover.stdout)
	}
	envURL, ok := ctEnvValue(data, "DATABASE_URL")
	if !ok {
		p.t.Fatalf("the .env lost DATABASE_URL")
	}
	up, err := postgres.ParseURL(envURL)
	if err != nil {
		p.t.Fatalf("the .env's DATABASE_URL: %v", err)
	}
	if string(up.Password) != s.val || up.User != p.role {
		p.t.Fatalf("the .env's DATABASE_URL does not embed the current password of role %s", p.role)
	}
	if !loginURL(p.t, envURL) {
		p.t.Fatal("the .env's DATABASE_URL does not log in")
	}
	other := func(b []byte) []string {
		return ctOtherLines([]byte(strings.Join(ctOtherLines(b, "DATABASE_PASSWORD"), "")), "DATABASE_URL")
	}
	if got, want := other(data), other(p.orig); !slices.Equal(got, want) {
		p.t.Fatalf("the other lines of the .env changed:\ngot:\n%s\nwant:\n%s", strings.Join(got, ""), strings.Join(want, ""))
	}
	for n, v := range known {
		if got := p.must("get", "DATABASE_PASSWORD", "-n", "--version", strconv.Itoa(n)); got != v {
			p.t.Fatalf("DATABASE_PASSWORD v%d no longer holds its value", n)
		}
	}
	if r := p.run("audit", "verify"); r.code != 0 {
		p.t.Fatalf("audit chain broken: %v", r)
	}
	p.checkNoLeftovers()
	return s
}

// TestPostgresCrashMatrix kills `rekey rotate DATABASE_PASSWORD` at every
// fault point (and `rekey recover` at the rollback points, after a crash
// that left the database on the new password), then checks recovery.
func TestPostgresCrashMatrix(t *testing.T) {
	c := startCluster(t)
	ctRekeyBin(t)
	type tc struct {
		name    string
		first   string // fault point of the rotate
		second  string // fault point of a first `rekey recover`, or ""
		allowed []ctOutcome
	}
	var cases []tc
	for _, point := range ctRotationPoints {
		cases = append(cases, tc{name: point, first: point, allowed: ctAllowed(point)})
	}
	// A rotation killed after ALTER ROLE (apply:after) is completed by
	// recovery (the create commit journals the publish intent; apply is
	// idempotent); kill that recovery at its publish too.
	for _, second := range []string{"publish:before", "publish:after"} {
		cases = append(cases, tc{name: "apply:after+" + second, first: "apply:after", second: second, allowed: []ctOutcome{ctCompleted}})
	}
	for _, k := range cases {
		t.Run(strings.ReplaceAll(k.name, ":", "-"), func(t *testing.T) {
			t.Parallel()
			p := pgcNewProject(t, c)
			oldVal := p.value(1)
			p.someStoredLogsIn("before the rotation", 1)

			r := p.runEnv([]string{"REKEY_TEST_FAULT=" + k.first}, "rotate", "DATABASE_PASSWORD")
			if r.sig != syscall.SIGKILL {
				t.Fatalf("want death by SIGKILL at %s, got %v", k.first, r)
			}
			who := p.someStoredLogsIn("right after the kill at "+k.first, 1, 2)
			// ALTER ROLE runs inside the apply step: before it the role has
			// the old password, after it the new one.
			wantWho := 1
			if slices.Index(ctRotationPoints, k.first) >= slices.Index(ctRotationPoints, "apply:after") {
				wantWho = 2
			}
			if who != wantWho {
				t.Fatalf("killed at %s: the role logs in with v%d, want v%d", k.first, who, wantWho)
			}
			if ctPublished(k.first) {
				if v, _ := ctEnvValue(p.readEnv(), "DATABASE_PASSWORD"); v == oldVal {
					t.Fatalf("after %s the .env should hold the new value already", k.first)
				}
			}
			if k.second != "" {
				r := p.runEnv([]string{"REKEY_TEST_FAULT=" + k.second}, "recover")
				if r.sig != syscall.SIGKILL {
					t.Fatalf("want recover to die by SIGKILL at %s, got %v", k.second, r)
				}
				// rollback:before: the .env may be restored, the role still on v2;
				// rollback:after: ALTER ROLE back to v1 done, the journal not closed.
				who2 := p.someStoredLogsIn("right after the recovery killed at "+k.second, 1, 2)
				if k.second == "rollback:after" && who2 != 1 {
					t.Fatalf("recovery killed at rollback:after: the role logs in with v%d, want v1", who2)
				}
			}

			s := p.consistent(map[int]string{1: oldVal})
			// ctCheckOutcome wants a ctState.
			got := ctCheckOutcome(t, ctState{cur: s.cur, val: s.val, rows: s.rows, recover: s.recover}, k.allowed, 1, oldVal)
			if want := got.recoverSays(); ctPoint(k.first).Recovery != engine.Finished && !strings.Contains(s.recover.stdout, want) {
				t.Errorf("recover should say %q:\n%s", want, s.recover.stdout)
			}
			if got == ctCompleted {
				if r, _ := ctRowN(s.rows, 1); r.Label != "previous" {
					t.Fatalf("the old password should be v1 previous: %+v", s.rows)
				}
			}
			t.Logf("killed at %s%s: %s", k.first, map[bool]string{true: ", then recover killed at " + k.second}[k.second != ""], got)

			// A normal rotation works afterwards.
			known := map[int]string{1: oldVal, s.cur: s.val}
			r = p.run("rotate", "DATABASE_PASSWORD")
			if r.code != 0 || r.sig != 0 {
				t.Fatalf("rotation after recovery: %v", r)
			}
			s2 := p.consistent(known)
			if s2.cur != s.rows[len(s.rows)-1].N+1 || s2.val == s.val {
				t.Fatalf("the rotation after recovery did not make a new current version: %+v", s2.rows)
			}
			if r, _ := ctRowN(s2.rows, s.cur); r.Label != "previous" {
				t.Fatalf("want v%d previous after the rotation, got %+v", s.cur, s2.rows)
			}
		})
	}
}

// TestPostgresKillLoop kills `rekey rotate DATABASE_PASSWORD` at a random
// moment (seeded: REKEY_TEST_SEED) 50 times; after each kill at least one
// stored version logs in, and `rekey recover` converges to a consistent state.
func TestPostgresKillLoop(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	c := startCluster(t)
	p := pgcNewProject(t, c)
	known := map[int]string{1: p.value(1)}

	dbOnNew := 0
	st := ctKillLoop(t, p, "DATABASE_PASSWORD", 0x9e5, testkit.KillBudget(55*time.Second), known, func(i int, delay time.Duration, cur int) {
		if who := p.someStoredLogsIn(fmt.Sprintf("iteration %d, right after the kill (%v)", i, delay), cur, cur+1); who != cur {
			dbOnNew++
		}
	}, func(i int, s ctState, cur int) {
		if r, _ := ctRowN(s.rows, cur); s.cur != cur && r.Label != "previous" {
			t.Fatalf("iteration %d: the old current v%d is not previous: %+v", i, cur, s.rows)
		}
	})
	for n, v := range known {
		if got := p.must("get", "DATABASE_PASSWORD", "-n", "--version", strconv.Itoa(n)); got != v {
			t.Fatalf("DATABASE_PASSWORD v%d lost its value", n)
		}
	}
	t.Logf("%d rotations in %v: %d killed mid-way, %d finished before the kill; %d left the database on the new password before recovery; recovery rolled back %d, completed %d, found nothing to do %d",
		st.iterations, st.took.Round(time.Millisecond), st.killed, st.finished, dbOnNew, st.rolledBack, st.completed, st.untouched)
}
