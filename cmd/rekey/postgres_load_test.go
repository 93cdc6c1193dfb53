package main

// The alternating strategy under load: a loop logs in with the .env's
// DATABASE_URL every few milliseconds while rotations, `rekey set`,
// `rekey rollback` and the end of grace periods change the password, and
// not one login may fail.

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/dotenv"
	rkapp "github.com/rekeyhq/rekey/internal/app"
	"github.com/rekeyhq/rekey/internal/pgtest"
	"github.com/rekeyhq/rekey/internal/postgres"
	"github.com/rekeyhq/rekey/internal/testkit"
)

// pglLoop logs in with the .env's DATABASE_URL every 3 ms until stopped,
// as an application that reads its .env for each new connection would.
type pglLoop struct {
	logins, failures atomic.Int64
	mu               sync.Mutex
	failed           []string // who failed, when (for the report)
	stop             chan struct{}
	done             sync.WaitGroup
}

func pglStartLoop(t *testing.T, envPath string) *pglLoop {
	l := &pglLoop{stop: make(chan struct{})}
	l.done.Add(1)
	go func() {
		defer l.done.Done()
		tick := time.NewTicker(3 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-l.stop:
				return
			case <-tick.C:
			}
			data, err := os.ReadFile(envPath)
			if err != nil {
				t.Errorf("login loop: read the .env: %v", err) // rekey replaces it by rename: it always exists
				return
			}
			f, err := dotenv.Parse(".env", data)
			if err != nil {
				t.Errorf("login loop: %v", err)
				return
			}
			u, _ := f.Get("DATABASE_URL")
			params, err := postgres.ParseURL(u)
			if err != nil {
				t.Errorf("login loop: the .env's DATABASE_URL: %v", err)
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			ok, err := postgres.TryLogin(ctx, params)
			cancel()
			l.logins.Add(1)
			if !ok {
				l.failures.Add(1)
				l.mu.Lock()
				l.failed = append(l.failed, fmt.Sprintf("%s as %s: %v", time.Now().Format("15:04:05.000"), params.User, err))
				l.mu.Unlock()
			}
		}
	}()
	return l
}

// end stops the loop and waits for it.
func (l *pglLoop) end() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.done.Wait()
}

// pglVersion is a row of `rekey history --json`.
type pglVersion struct {
	N      int               `json:"version"`
	Label  string            `json:"label"`
	Source string            `json:"source"`
	Attrs  map[string]string `json:"attributes"`
}

// historyJSON parses `rekey history DATABASE_PASSWORD --json`.
func (p *pgaProject) historyJSON() []pglVersion {
	p.t.Helper()
	var vs []pglVersion
	if err := json.Unmarshal([]byte(p.mustLog("history", "DATABASE_PASSWORD", "--json")), &vs); err != nil {
		p.t.Fatalf("history --json: %v", err)
	}
	for i, v := range vs {
		if v.N != i+1 {
			p.t.Fatalf("history --json: row %d is v%d", i, v.N)
		}
	}
	return vs
}

// setStdin runs `rekey set DATABASE_PASSWORD` with val on stdin (setResult) and fails unless it succeeds.
func (p *pgaProject) setStdin(val string) {
	p.t.Helper()
	if r := p.setResult(p.t, val); r.code != 0 || r.sig != 0 {
		p.t.Fatalf("%v", r)
	}
}

// The steps of TestPostgresAlternatingUnderLoad: R rotate, S set (a value
// on stdin), B rollback, E the end of the previous version's grace
// (`rotate --due` a day and an hour later). Every kind follows the others:
// S while the previous version is in its grace; E after S (the version the
// set superseded is disabled, as after a rotation); B after E (its role's
// password was ended: it is set again); B after B (back to the set value);
// E after B; S after E; B undoing an R; E after R; 20 R in all.
const pglSchedule = pglEveryKind + "RRRRRRRRE" + "RRRRRRRR"

// pglEveryKind is the part of pglSchedule where every kind of step follows
// the others: what a repeat on another major runs (testkit.Repeating).
const pglEveryKind = "RRSEBBESRBRE"

// TestPostgresAlternatingUnderLoad: `rekey init --postgres-alternating`
// with a non-superuser app role (on 16 and later through the admin role
// the README's table describes), then 20 rotations mixed with sets,
// rollbacks and ends of grace, while a loop logs in with the .env's URL
// every 3 ms: zero failed logins. After every command the current version
// has a role attribute and the .env's URL logs in as that role; set and
// rollback land on the idle role like a rotation (a rollback to a version
// whose grace ended sets its password again); after an end of grace the
// idle role logs in with none of its passwords; no value leaks. A subtest
// rolls back across the switch from single to alternating. Repeated on
// another major, it runs pglEveryKind only.
func TestPostgresAlternatingUnderLoad(t *testing.T) {
	schedule := pglSchedule
	if testkit.Repeating() {
		schedule = pglEveryKind
	}
	c := startCluster(t)
	t0 := time.Now()
	p := pgaNewProject(t, c, pgaOptions{createRole: true, initFlag: "--postgres-alternating"})
	if p.superuser(p.blue) || p.superuser(p.green) {
		t.Fatal("the app's roles must not be superusers")
	}
	vs := p.historyJSON()
	if r := vs[0].Attrs["role"]; r != p.blue {
		t.Fatalf("init --postgres-alternating: v1 has role %q, want %s", r, p.blue)
	}
	if u, user, _ := p.envURL(); user != p.blue || !p.reads(u) {
		t.Fatalf("after init the .env should log in as %s", p.blue)
	}

	loop := pglStartLoop(t, p.envPath)
	defer loop.end()
	during := map[byte]int64{} // logins while each kind of step ran
	counts := map[byte]int{}
	var inCmds time.Duration // in the steps' commands (with an end of grace's checks)
	cur := 1
	curRole := p.blue
	for i := 0; i < len(schedule); i++ {
		op := schedule[i]
		counts[op]++
		before := vs
		prev := before[len(before)-1] // the current version before the step
		var want string               // the new version's value, when the test knows it
		l0, c0 := loop.logins.Load(), time.Now()
		switch op {
		case 'R':
			p.mustLog("rotate", "DATABASE_PASSWORD")
		case 'S':
			want = ctRandB64(24, base64.RawURLEncoding)
			p.setStdin(want)
		case 'B':
			pv := before[len(before)-2]
			if pv.Label != "previous" {
				t.Fatalf("step %d: v%d is %q, not previous", i, pv.N, pv.Label)
			}
			want = p.value(pv.N)
			p.mustLog("rollback", "DATABASE_PASSWORD")
		case 'E':
			vs = p.expireStep(i, before, curRole)
		}
		during[op] += loop.logins.Load() - l0
		inCmds += time.Since(c0)
		if op != 'E' {
			vs = p.checkStep(i, op, prev, want)
			cur, curRole = vs[len(vs)-1].N, vs[len(vs)-1].Attrs["role"]
		}
	}
	loop.end()
	p.checkHistoryAfterLoad(cur)

	logins, failures := loop.logins.Load(), loop.failures.Load()
	t.Logf("PostgreSQL %d: %d steps (%d rotations, %d sets, %d rollbacks, %d ends of grace) in %v (with init; %v in the steps' commands); %d logins, %d failed",
		c.Major, len(schedule), counts['R'], counts['S'], counts['B'], counts['E'], time.Since(t0).Round(time.Millisecond), inCmds.Round(time.Millisecond), logins, failures)
	t.Logf("logins while each kind ran: rotate %d, set %d, rollback %d, end of grace %d", during['R'], during['S'], during['B'], during['E'])
	if counts['R'] < 4 || counts['S'] < 2 || counts['B'] < 2 || counts['E'] < 2 || schedule == pglSchedule && counts['R'] < 20 {
		t.Fatalf("the schedule %q lacks steps", schedule)
	}
	if failures != 0 {
		t.Errorf("%d of %d logins with the .env's URL failed:\n%s", failures, logins, strings.Join(loop.failed, "\n"))
	}
	for _, op := range []byte("RSBE") {
		if during[op] == 0 {
			t.Errorf("the login loop never logged in while %q steps ran: it tested nothing there", op)
		}
	}
	p.consistent()
	p.checkNoLeak()

	t.Run("rollback-across-the-switch", func(t *testing.T) { pglRollbackAcrossSwitch(t, c) })
}

// pglRollbackAcrossSwitch: a project rotated in the single strategy, then
// switched to alternating by `rekey postgres add-role` (through the admin
// role on 16 and later). Its previous version v1 has no role attribute:
// it belongs, like the current v2, to the first role (whose password is
// v2's now). `rekey rollback` to it lands on the idle second role like a
// rotation, setting that role's password to v1's, under the login loop;
// the next rotation goes back to the first role.
func pglRollbackAcrossSwitch(t *testing.T, c *pgtest.Cluster) {
	p := pgaNewProject(t, c, pgaOptions{createRole: true})
	p.mustLog("rotate", "DATABASE_PASSWORD") // single: v2 on the first role
	if p.adminURL != "" {
		p.useAdmin()
	}
	p.mustLog("postgres", "add-role")
	vs := p.historyJSON()
	if len(vs) != 2 || vs[0].Attrs["role"] != "" || vs[1].Attrs["role"] != p.blue {
		t.Fatalf("after add-role: want v1 without a role and v2 on %s, got %+v", p.blue, vs)
	}
	if p.logsInAs(p.blue, p.value(1)) || p.logsInAs(p.green, p.value(1)) {
		t.Fatal("v1's password still logs in after the single rotation")
	}
	loop := pglStartLoop(t, p.envPath)
	defer loop.end()
	p.mustLog("rollback", "DATABASE_PASSWORD")
	vs = p.checkStep(0, 'B', vs[1], p.value(1))
	p.mustLog("rotate", "DATABASE_PASSWORD")
	p.checkStep(1, 'R', vs[len(vs)-1], "")
	loop.end()
	t.Logf("rollback to v1 (no role: %s's, like the current v2) landed on %s; %d logins, %d failed", p.blue, p.green, loop.logins.Load(), loop.failures.Load())
	if loop.failures.Load() != 0 {
		t.Errorf("%d logins with the .env's URL failed:\n%s", loop.failures.Load(), strings.Join(loop.failed, "\n"))
	}
	// recover has nothing to do; the audit chain verifies. (consistent()
	// would take v1, whose value the previous v3 copied, for a stale
	// password of the idle role.)
	if r := p.runLog("recover"); r.code != 0 || !strings.Contains(r.stdout+r.stderr, "nothing to recover") {
		t.Fatalf("recover should find nothing to do: %v", r)
	}
	p.mustLog("audit", "verify")
	p.checkNoLeak()
}

// checkStep checks the state after step i (op R, S or B) that superseded
// prev; want is the new value when the test knows it (S: the value given;
// B: the previous version's). It returns the history.
func (p *pgaProject) checkStep(i int, op byte, prev pglVersion, want string) []pglVersion {
	p.t.Helper()
	vs := p.historyJSON()
	v := vs[len(vs)-1]
	n := prev.N + 1
	if v.N != n || v.Label != "current" {
		p.t.Fatalf("step %d (%c): the last version is v%d (%q), want v%d current", i, op, v.N, v.Label, n)
	}
	if pv := vs[len(vs)-2]; pv.Label != "previous" || pv.Attrs[rekey.AttrGraceUntil] == "" {
		p.t.Fatalf("step %d (%c): v%d is %q with attributes %v, want previous with a grace period", i, op, pv.N, pv.Label, pv.Attrs)
	}
	wantSource := map[byte]string{'R': "generated", 'S': "manual", 'B': "rollback"}[op]
	if v.Source != wantSource {
		p.t.Fatalf("step %d (%c): v%d's source is %q, want %q", i, op, n, v.Source, wantSource)
	}
	if op == 'B' && v.Attrs[rekey.AttrValueOf] == "" {
		p.t.Fatalf("step %d: the rollback's v%d has no value_of attribute: %v", i, n, v.Attrs)
	}
	// The new version lands on the role the previous current did not use.
	prevRole := prev.Attrs["role"]
	if prevRole == "" {
		prevRole = p.blue // v1, recorded by init: the first role of the pair
	}
	role := v.Attrs["role"]
	idle := p.blue
	if prevRole == p.blue {
		idle = p.green
	}
	if role != idle {
		p.t.Fatalf("step %d (%c): v%d has role %q, want the idle role %s (v%d uses %s)", i, op, n, role, idle, prev.N, prevRole)
	}
	u, user, pw := p.envURL()
	if user != role {
		p.t.Fatalf("step %d (%c): the .env logs in as %s, but current v%d's role is %s", i, op, user, n, role)
	}
	got := p.value(n)
	if pw != got || op != 'R' && p.must("get", "DATABASE_PASSWORD", "-n") != got {
		p.t.Fatalf("step %d (%c): the .env's password, get and get --version %d disagree", i, op, n)
	}
	if want != "" && got != want {
		p.t.Fatalf("step %d (%c): v%d does not hold the value it should", i, op, n)
	}
	if op == 'R' && got == p.value(prev.N) {
		p.t.Fatalf("step %d: the rotation kept v%d's value", i, prev.N)
	}
	if !p.reads(u) {
		p.t.Fatalf("step %d (%c): the .env's URL (role %s) does not log in", i, op, user)
	}
	// The superseded version keeps working on its role during its grace.
	if !p.logsInAs(prevRole, p.value(prev.N)) {
		p.t.Fatalf("step %d (%c): the previous v%d no longer logs in as %s during its grace", i, op, prev.N, prevRole)
	}
	return vs
}

// expireStep ends the grace of the previous version (`rotate --due` a day
// and an hour later) and checks that its role no longer logs in with any
// stored password, and that the current one still does. vs is the history
// before; it returns the history after.
func (p *pgaProject) expireStep(i int, vs []pglVersion, curRole string) []pglVersion {
	p.t.Helper()
	cur, pv := vs[len(vs)-1].N, vs[len(vs)-2]
	later := time.Now().Add(rkapp.DefaultPostgresGrace + time.Hour).UTC().Format(time.RFC3339)
	r := p.runEnv([]string{"REKEY_TEST_NOW=" + later}, "rotate", "--due")
	p.outputs = append(p.outputs, r.stdout, r.stderr)
	if r.code != 0 || !strings.Contains(r.stderr, fmt.Sprintf("the grace period of DATABASE_PASSWORD v%d ended", pv.N)) {
		p.t.Fatalf("step %d: rotate --due a day later should end the grace of v%d: %v", i, pv.N, r)
	}
	after := p.historyJSON()
	if last := after[len(after)-1]; len(after) != len(vs) || last.N != cur || last.Label != "current" || last.Attrs["role"] != curRole {
		p.t.Fatalf("step %d: rotate --due a day later changed the versions", i)
	}
	if after[len(after)-2].Attrs[rekey.AttrExpired] == "" {
		p.t.Fatalf("step %d: v%d is not marked expired: %v", i, pv.N, after[len(after)-2].Attrs)
	}
	idle := p.blue
	if curRole == p.blue {
		idle = p.green
	}
	if r := pv.Attrs["role"]; r != idle {
		p.t.Fatalf("step %d: the previous v%d has role %q, want the idle %s", i, pv.N, r, idle)
	}
	// Every password the idle role ever had (and the current one) is refused.
	tried := map[string]bool{}
	for _, v := range after {
		if val := p.value(v.N); (v.Attrs["role"] == idle || v.N == cur) && !tried[val] {
			tried[val] = true
			if p.logsInAs(idle, val) {
				p.t.Fatalf("step %d: after the end of v%d's grace the idle role %s still logs in with v%d", i, pv.N, idle, v.N)
			}
		}
	}
	u, user, _ := p.envURL()
	if user != curRole || !p.reads(u) {
		p.t.Fatalf("step %d: after the end of the grace the .env (role %s) should log in as %s", i, user, curRole)
	}
	return after
}

// checkHistoryAfterLoad: every version after v1 has a role, the roles
// alternate, and the text history labels the last two.
func (p *pgaProject) checkHistoryAfterLoad(cur int) {
	p.t.Helper()
	vs := p.historyJSON()
	for i := 1; i < len(vs); i++ {
		r, before := vs[i].Attrs["role"], vs[i-1].Attrs["role"]
		if before == "" {
			before = p.blue
		}
		if r != p.blue && r != p.green || r == before {
			p.t.Fatalf("v%d has role %q after v%d's %q: the roles must alternate", vs[i].N, r, vs[i-1].N, before)
		}
	}
	hist := p.mustLog("history", "DATABASE_PASSWORD")
	if !regexp.MustCompile(`(?m)^v`+strconv.Itoa(cur)+` +current `).MatchString(hist) || !regexp.MustCompile(`(?m)^v`+strconv.Itoa(cur-1)+` +previous `).MatchString(hist) {
		p.t.Fatalf("history should show v%d current and v%d previous:\n%s", cur, cur-1, hist)
	}
}

// superuser reports whether role is a superuser.
func (p *pgaProject) superuser(role string) bool {
	p.t.Helper()
	conn, err := p.c.Connect(pgaCtx(p.t), "postgres")
	if err != nil {
		p.t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var super bool
	if err := conn.QueryRow(pgaCtx(p.t), "SELECT rolsuper FROM pg_roles WHERE rolname = $1", role).Scan(&super); err != nil {
		p.t.Fatalf("role %s: %v", role, err)
	}
	return super
}
