package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/reencrypt"
)

// The load client of BenchmarkReencryptImpact: this test binary re-executed
// (TestImpactLoadClient) with REKEY_BENCH_LOADCLIENT naming a 0600 spec
// file, so that it is a process of its own, scheduled by the kernel next
// to the server and the re-encryption like an application would be.
//
// It is open-loop: operation i is due at start + i/Rate whatever happened
// to the ones before it; a scheduler hands each due operation to a pool of
// Conns connections (an unbounded queue between them), and an operation's
// latency runs from its due time to its completion, so time spent waiting
// behind a stall (in the queue, or on a row lock) counts (no coordinated
// omission). One operation in 1/WriteFraction is a write: an UPDATE of the
// row's email with a value encrypted under the key the application
// currently writes with (the run's new key, as an application deployed
// for the rotation does), so the re-encryption's compare-and-swap meets
// concurrent writes; the others are point reads by primary key of the
// whole row. Ids are uniform in 1..Rows.
//
// Protocol: the client prints "READY" once its connections are open and
// its schedule has started; then every stdin line "phase NAME KEY" starts
// a phase (ending the previous one), KEY being the index in Keys of the
// key writes use from then on; "end" (or EOF) ends the last phase, the
// client drains its queue and prints "LOADCLIENT-RESULT " and the JSON
// of []impactPhase on stdout. An operation belongs to the phase it was
// due in; a phase's achieved rate counts the operations that completed
// within it.

const loadClientEnv = "REKEY_BENCH_LOADCLIENT"

type loadClientSpec struct {
	DSN           string
	Rows          int
	Rate          float64 // operations per second
	WriteFraction float64 // share of writes (0.1)
	Conns         int
	Config        rekey.ReencryptSpec
	Keys          []string
}

type impactPhase struct {
	Name      string
	Seconds   float64
	Scheduled int     // operations due in the phase
	Completed int     // operations that completed within the phase
	Errors    int     // operations (due in the phase) that failed
	Rate      float64 // Completed / Seconds
	P50, P99  float64 // ms, over the operations due in the phase
	Max       float64 // ms
	Writes    int     // writes due in the phase
	// P99Read, P99Write: the p99 (ms) of the reads and of the writes alone.
	P99Read, P99Write float64
	// MaxQueued is the most operations waiting for a free connection when
	// one of the phase's was scheduled (near Conns: the pool was short).
	MaxQueued int
}

type loadOp struct {
	due    time.Time
	queued int // operations already waiting when it was scheduled
	phase  int32
	write  bool
	key    int32
	id     int64
}

type opRecord struct {
	phase  int32
	queued int
	done   time.Time
	lat    time.Duration
	err    bool
	write  bool
}

// TestImpactLoadClient is BenchmarkReencryptImpact's load client: it does
// nothing unless REKEY_BENCH_LOADCLIENT names a spec file.
func TestImpactLoadClient(t *testing.T) {
	path := os.Getenv(loadClientEnv)
	if path == "" {
		return
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var s loadClientSpec
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatal(err)
	}
	phases, err := runLoadClient(s, bufio.NewScanner(os.Stdin))
	if err != nil {
		t.Fatal(err)
	}
	out, _ := json.Marshal(phases)
	fmt.Printf("LOADCLIENT-RESULT %s\n", out)
}

func runLoadClient(s loadClientSpec, in *bufio.Scanner) ([]impactPhase, error) {
	ctx := context.Background()
	conns := make([]*pgx.Conn, s.Conns)
	for i := range conns {
		c, err := pgx.Connect(ctx, s.DSN)
		if err != nil {
			return nil, err
		}
		defer c.Close(ctx)
		conns[i] = c
	}
	var (
		mu       sync.Mutex
		records  []opRecord
		queue    = newOpQueue()
		phase    atomic.Int32
		key      atomic.Int32
		stopping atomic.Bool
		names    = []string{"_start"}
		starts   = []time.Time{time.Now()}
		workers  sync.WaitGroup
	)
	for _, c := range conns {
		workers.Add(1)
		go func() {
			defer workers.Done()
			ciphers := map[int32]*reencrypt.Cipher{}
			for {
				op, ok := queue.pop()
				if !ok {
					return
				}
				err := doLoadOp(ctx, c, s, ciphers, op)
				done := time.Now()
				mu.Lock()
				records = append(records, opRecord{phase: op.phase, queued: op.queued, done: done, lat: done.Sub(op.due), err: err != nil, write: op.write})
				mu.Unlock()
			}
		}()
	}
	// The scheduler: operation i is due at start + i/Rate.
	schedDone := make(chan struct{})
	go func() {
		defer close(schedDone)
		rng := rand.New(rand.NewPCG(1, 2))
		start := time.Now()
		interval := time.Duration(float64(time.Second) / s.Rate)
		for i := int64(0); !stopping.Load(); i++ {
			due := start.Add(time.Duration(i) * interval)
			if d := time.Until(due); d > 0 {
				time.Sleep(d)
			}
			queue.push(loadOp{due: due, phase: phase.Load(), key: key.Load(),
				write: rng.Float64() < s.WriteFraction, id: 1 + rng.Int64N(int64(s.Rows))})
		}
	}()
	stop := sync.OnceFunc(func() {
		stopping.Store(true)
		<-schedDone
		queue.close()
		workers.Wait()
	})
	defer stop() // on an error
	fmt.Println("READY")
	for in.Scan() {
		f := strings.Fields(in.Text())
		if len(f) == 0 {
			continue
		}
		if f[0] == "end" {
			break
		}
		if f[0] != "phase" || len(f) != 3 {
			return nil, fmt.Errorf("load client: stdin %q: want \"phase NAME KEY\" or \"end\"", in.Text())
		}
		k, err := strconv.Atoi(f[2])
		if err != nil || k < 0 || k >= len(s.Keys) {
			return nil, fmt.Errorf("load client: stdin %q: KEY must be 0..%d", in.Text(), len(s.Keys)-1)
		}
		key.Store(int32(k))
		names, starts = append(names, f[1]), append(starts, time.Now())
		phase.Store(int32(len(names) - 1))
	}
	starts = append(starts, time.Now())
	stop()
	return summarize(names, starts, records), nil
}

func doLoadOp(ctx context.Context, c *pgx.Conn, s loadClientSpec, ciphers map[int32]*reencrypt.Cipher, op loadOp) error {
	if !op.write {
		var name string
		var email, ssn *string
		return c.QueryRow(ctx, `SELECT name, email, ssn FROM t WHERE id = $1`, op.id).Scan(&name, &email, &ssn)
	}
	ciph := ciphers[op.key]
	if ciph == nil {
		var err error
		if ciph, err = reencrypt.NewCipher(s.Config, rekey.NewValueString(s.Keys[op.key]), nil); err != nil {
			return err
		}
		ciphers[op.key] = ciph
	}
	v, err := ciph.Encrypt([]byte(fmt.Sprintf("patient%d+%d@example.com", op.id, op.due.UnixNano()%1000)))
	if err != nil {
		return err
	}
	_, err = c.Exec(ctx, `UPDATE t SET email = $1 WHERE id = $2`, string(v), op.id)
	return err
}

func summarize(names []string, starts []time.Time, records []opRecord) []impactPhase {
	out := make([]impactPhase, len(names))
	lats := make([][]time.Duration, len(names))
	rw := make([][2][]time.Duration, len(names)) // reads, writes
	for i := range out {
		out[i].Name = names[i]
		out[i].Seconds = starts[i+1].Sub(starts[i]).Seconds()
	}
	for _, r := range records {
		p := &out[r.phase]
		p.Scheduled++
		p.MaxQueued = max(p.MaxQueued, r.queued)
		if r.err {
			p.Errors++
		}
		if r.write {
			p.Writes++
		}
		lats[r.phase] = append(lats[r.phase], r.lat)
		w := 0
		if r.write {
			w = 1
		}
		rw[r.phase][w] = append(rw[r.phase][w], r.lat)
		// The phase the completion falls in.
		for i := range out {
			if !r.done.Before(starts[i]) && r.done.Before(starts[i+1]) {
				out[i].Completed++
				break
			}
		}
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	p99 := func(l []time.Duration) float64 {
		if len(l) == 0 {
			return 0
		}
		slices.Sort(l)
		return ms(l[min(len(l)-1, len(l)*99/100)])
	}
	for i := range out {
		l := lats[i]
		if len(l) == 0 {
			continue
		}
		slices.Sort(l)
		out[i].P50 = ms(l[len(l)*50/100])
		out[i].P99 = ms(l[min(len(l)-1, len(l)*99/100)])
		out[i].Max = ms(l[len(l)-1])
		out[i].P99Read, out[i].P99Write = p99(rw[i][0]), p99(rw[i][1])
		out[i].Rate = float64(out[i].Completed) / max(out[i].Seconds, 1e-9)
	}
	return out
}

// opQueue is an unbounded FIFO: the scheduler never waits on the workers.
type opQueue struct {
	mu     sync.Mutex
	cond   *sync.Cond
	ops    []loadOp
	closed bool
}

func newOpQueue() *opQueue {
	q := &opQueue{}
	q.cond = sync.NewCond(&q.mu)
	return q
}

func (q *opQueue) push(op loadOp) {
	q.mu.Lock()
	op.queued = len(q.ops)
	q.ops = append(q.ops, op)
	q.mu.Unlock()
	q.cond.Signal()
}

func (q *opQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.cond.Broadcast()
}

func (q *opQueue) pop() (loadOp, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.ops) == 0 && !q.closed {
		q.cond.Wait()
	}
	if len(q.ops) == 0 {
		return loadOp{}, false
	}
	op := q.ops[0]
	q.ops = q.ops[1:]
	return op, true
}
