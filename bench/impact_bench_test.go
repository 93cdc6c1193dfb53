package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/reencrypt"
	"github.com/rekeyhq/rekey/internal/testkit"
)

// BenchmarkReencryptImpact measures what an application sees while rekey
// re-encrypts the table it uses (issue 14). On a durable cluster (fsync,
// synchronous_commit and full_page_writes on) with one table of
// REKEY_BENCH_ROWS rows (default 1,000,000) × 2 AES-256-GCM columns, an
// open-loop load client in a process of its own (TestImpactLoadClient:
// REKEY_IMPACT_RATE operations/s, default 2,000; 10% writes of the
// encrypted email column under the run's new key, 90% point reads; latency
// from each operation's scheduled start) runs throughout. Phases:
//
//	idle       the client alone for REKEY_IMPACT_IDLE (default 5s): the calibration
//	full       reencrypt.Run at full speed (pace: full)
//	50000/s …  reencrypt.Run with rows_per_second 50000, 20000, 10000
//	           (REKEY_IMPACT_RATES, comma-separated, changes the list)
//	adaptive   reencrypt.Run at adaptive pace (with a summary of the
//	           controller's decisions: back-offs, rate and batch ranges)
//
// Each run re-encrypts the whole table from one key to the other (they
// alternate), after a VACUUM and CHECKPOINT outside every measured phase.
// It prints, side by side, the client's p50/p99/max and achieved rate
// against its schedule in each phase, each run's wall time, rows/s and
// rows redone after a concurrent write (revisited), and the machine's
// 1-minute load average at the phase's end (load1: the machine is shared),
// and the most operations that waited for one of the client's
// REKEY_IMPACT_CONNS connections (default 40; the test clusters allow 50:
// max queued > 0 means all of them were busy, on a stall or a row lock).
// bench/run runs it; alone:
//
//	REKEY_BENCH_ROWS=200000 go test -run '^$' -bench '^BenchmarkReencryptImpact$' -benchtime 1x -count 1 -timeout 60m ./bench/
func BenchmarkReencryptImpact(b *testing.B) {
	n := impactEnvInt(b, "REKEY_BENCH_ROWS", 1_000_000, 1000)
	rate := impactEnvInt(b, "REKEY_IMPACT_RATE", 2000, 1)
	conns := impactEnvInt(b, "REKEY_IMPACT_CONNS", 40, 1)
	idle := time.Duration(impactEnvInt(b, "REKEY_IMPACT_IDLE", 5, 1)) * time.Second
	rates := []int{50000, 20000, 10000}
	if s := os.Getenv("REKEY_IMPACT_RATES"); s != "" {
		rates = nil
		for _, f := range strings.Split(s, ",") {
			v, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || v < 1 {
				b.Fatalf("REKEY_IMPACT_RATES=%q: want positive integers separated by commas", s)
			}
			rates = append(rates, v)
		}
	}
	c := benchCluster(b, durableSettings...)
	ctx := context.Background()
	dsn := c.SuperConnString("bench")
	conn, err := c.Connect(ctx, "bench")
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	cfg := rekey.ReencryptSpec{Codec: reencrypt.CodecAESGCM, Encoding: reencrypt.EncodingBase64, Columns: []string{"t.email", "t.ssn"}}
	keys := []rekey.Value{randValue(), randValue()}
	t0 := time.Now()
	if err := loadReencryptTable(ctx, conn, cfg, keys[0], n); err != nil {
		b.Fatal(err)
	}
	load := time.Since(t0)
	if _, err := floorPass(ctx, conn, n, reencrypt.DefaultBatchSize); err != nil {
		b.Fatal(err)
	}
	settle := func() {
		for _, s := range []string{"VACUUM ANALYZE t", "CHECKPOINT"} {
			if _, err := conn.Exec(ctx, s); err != nil {
				b.Fatal(err)
			}
		}
		time.Sleep(time.Second)
	}
	settle()

	cl := startLoadClient(b, loadClientSpec{DSN: dsn, Rows: n, Rate: float64(rate), WriteFraction: 0.1, Conns: conns,
		Config: cfg, Keys: []string{keys[0].RevealString(), keys[1].RevealString()}})
	cur := 0
	cl.phase("_warmup", cur)
	time.Sleep(2 * time.Second)
	cl.phase("idle", cur)
	time.Sleep(idle)

	type run struct {
		name, note string
		wall       time.Duration
		res        *reencrypt.Result
	}
	var runs []run
	paces := []string{rekey.PaceFull}
	for _, r := range rates {
		paces = append(paces, strconv.Itoa(r))
	}
	paces = append(paces, rekey.PaceAdaptive)
	for i, pace := range paces {
		spec, name := cfg, pace
		spec.Mode, spec.Pace = rekey.ReencryptOnline, pace
		if pace != rekey.PaceFull && pace != rekey.PaceAdaptive {
			// Today's pace under a hard ceiling.
			spec.RowsPerSecond, _ = strconv.Atoi(pace)
			spec.Pace, name = rekey.PaceFull, pace+"/s"
		}
		cl.phase("_settle", cur)
		settle()
		next := 1 - cur
		cl.phase(name, next) // the application writes with the new key from now on
		var decisions []reencrypt.PaceDecision
		var mu sync.Mutex
		t0 := time.Now()
		res, err := reencrypt.Run(ctx, reencrypt.Job{DSN: dsn, Config: spec, Old: keys[cur], New: keys[next], JobID: fmt.Sprintf("impact-%d", i),
			OnPace: func(_ string, d reencrypt.PaceDecision) { mu.Lock(); decisions = append(decisions, d); mu.Unlock() }})
		wall := time.Since(t0)
		if err != nil {
			cl.abort()
			b.Fatalf("%s: %v", name, err)
		}
		cur = next
		if res.Failed != 0 || res.Reencrypted+res.AlreadyNew < int64(2*n) {
			cl.abort()
			b.Fatalf("%s: re-encrypted %d values, %d already new, %d failed: want %d on the new key", name, res.Reencrypted, res.AlreadyNew, res.Failed, 2*n)
		}
		note := ""
		if pace == rekey.PaceAdaptive {
			note = paceSummary(decisions)
		}
		runs = append(runs, run{name: name, wall: wall, res: res, note: note})
	}
	cl.phase("_tail", cur)
	time.Sleep(time.Second)
	phases := cl.end()

	byName := map[string]impactPhase{}
	for _, p := range phases {
		byName[p.Name] = p
	}
	fmt.Printf("impact: %d rows x 2 columns (aes-256-gcm; loaded in %s), durable cluster, %d cores; client %d ops/s (10%% writes, %d connections), latency from each operation's scheduled start\n",
		n, load.Round(time.Millisecond), runtime.NumCPU(), rate, conns)
	fmt.Printf("  %-10s %9s %9s %9s %7s  %-15s %-17s %9s %9s %9s %9s %6s %10s\n", "phase", "p50 ms", "p99 ms", "max ms", "p99/idle", "p99 read/write", "achieved/schedule", "errors", "run wall", "rows/s", "revisited", "load1", "max queued")
	idleP := byName["idle"]
	line := func(name string, r *run) {
		p := byName[name]
		wall, rps, rev := "", "", ""
		if r != nil {
			rev = strconv.FormatInt(r.res.Revisited, 10)
			wall = r.wall.Round(10 * time.Millisecond).String()
			rps = fmt.Sprintf("%.0f", float64(n)/r.wall.Seconds())
		}
		fmt.Printf("  %-10s %9.2f %9.2f %9.1f %7.1fx  %6.1f/%-8.1f %6.0f/%-6.0f %3.0f%% %9d %9s %9s %9s %6.1f %10d\n", name, p.P50, p.P99, p.Max, p.P99/max(idleP.P99, 1e-9), p.P99Read, p.P99Write,
			p.Rate, float64(p.Scheduled)/max(p.Seconds, 1e-9), 100*p.Rate/max(float64(p.Scheduled)/max(p.Seconds, 1e-9), 1e-9), p.Errors, wall, rps, rev, cl.load[name], p.MaxQueued)
	}
	line("idle", nil)
	for i := range runs {
		r := &runs[i]
		line(r.name, r)
		if r.note != "" {
			fmt.Printf("  %-10s %s\n", "", r.note)
		}
		b.ReportMetric(byName[r.name].P99, "p99-ms-"+strings.TrimSuffix(r.name, "/s"))
	}
	b.ReportMetric(idleP.P99, "p99-ms-idle")
}

// paceSummary describes the adaptive pace's decisions: how many, how
// many backed off, and the range of its rate and batch size.
func paceSummary(ds []reencrypt.PaceDecision) string {
	if len(ds) == 0 {
		return "(no pace decision was logged: the run did not pace itself adaptively)"
	}
	var rates []float64
	backoffs, minB, maxB := 0, ds[0].Batch, ds[0].Batch
	for _, d := range ds {
		rates = append(rates, d.NewRate)
		if d.NewRate < d.OldRate {
			backoffs++
		}
		minB, maxB = min(minB, d.Batch), max(maxB, d.Batch)
	}
	slices.Sort(rates)
	return fmt.Sprintf("(adaptive: %d decisions, %d back-offs; target p99 %s; rate min/median/max %.0f/%.0f/%.0f rows/s; batch %d..%d rows)",
		len(ds), backoffs, ds[len(ds)-1].Target.Round(10*time.Microsecond), rates[0], rates[len(rates)/2], rates[len(rates)-1], minB, maxB)
}

func impactEnvInt(b *testing.B, name string, def, least int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < least {
		b.Fatalf("%s=%q: want an integer >= %d", name, s, least)
	}
	return v
}

// loadClient is the running load client (TestImpactLoadClient).
type loadClient struct {
	b     *testing.B
	stdin io.WriteCloser
	out   *bufio.Scanner
	wait  func() error
	kill  func() error
	cur   string             // the phase running
	load  map[string]float64 // the 1-minute load average at each phase's end
}

func startLoadClient(b *testing.B, spec loadClientSpec) *loadClient {
	cmd := testkit.Child(b, loadClientEnv, spec, "-test.run=^TestImpactLoadClient$", "-test.count=1")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	cl := &loadClient{b: b, stdin: stdin, out: bufio.NewScanner(stdout), wait: cmd.Wait, kill: cmd.Process.Kill, load: map[string]float64{}}
	cl.out.Buffer(make([]byte, 1<<16), 1<<24)
	for cl.out.Scan() {
		if cl.out.Text() == "READY" {
			return cl
		}
	}
	_ = cmd.Wait()
	b.Fatal("load client: exited before READY")
	return nil
}

func (cl *loadClient) phase(name string, key int) {
	cl.endPhase()
	cl.cur = name
	if _, err := fmt.Fprintf(cl.stdin, "phase %s %d\n", name, key); err != nil {
		cl.b.Fatalf("load client: %v", err)
	}
}

func (cl *loadClient) abort() { _ = cl.kill(); _ = cl.wait() }

// endPhase notes the load average as the current phase ends: the machine
// is shared, and the table must show how busy it was.
func (cl *loadClient) endPhase() {
	if raw, err := os.ReadFile("/proc/loadavg"); err == nil && cl.cur != "" {
		if f := strings.Fields(string(raw)); len(f) > 0 {
			cl.load[cl.cur], _ = strconv.ParseFloat(f[0], 64)
		}
	}
}

func (cl *loadClient) end() []impactPhase {
	cl.endPhase()
	if _, err := fmt.Fprintln(cl.stdin, "end"); err != nil {
		cl.b.Fatalf("load client: %v", err)
	}
	_ = cl.stdin.Close()
	var phases []impactPhase
	found := false
	for cl.out.Scan() {
		if l, ok := strings.CutPrefix(cl.out.Text(), "LOADCLIENT-RESULT "); ok {
			if err := json.Unmarshal([]byte(l), &phases); err != nil {
				cl.b.Fatalf("load client: %v", err)
			}
			found = true
		}
	}
	if err := cl.wait(); err != nil || !found {
		cl.b.Fatalf("load client: exit %v, result found: %t", err, found)
	}
	return phases
}
