package bench

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rekeyhq/rekey/dotenv"
	"github.com/rekeyhq/rekey/internal/postgres"
)

// BenchmarkLoginLoadSingle measures the failure window of the single
// strategy: a client opens a fresh connection every few milliseconds with
// whatever DATABASE_URL the .env holds at that moment (as an app restarting
// or a connection pool growing would) while `rekey rotate DATABASE_PASSWORD`
// runs b.N times. With one role, a login that read the .env just before the
// publish but reaches the server after ALTER ROLE fails: the window is
// between ALTER ROLE and the .env write. Reported: logins, failures,
// failures per rotation, and the failure window (the time from the first
// to the last failed login of a rotation, summed over the rotations).
func BenchmarkLoginLoadSingle(b *testing.B) { loginLoad(b, false) }

// BenchmarkLoginLoadAlternating is the same loop with the alternating
// strategy (two roles; each rotation sets the idle role's password, then
// points the .env at it; the other keeps its password during the grace
// period). It must see zero failed logins: the benchmark fails otherwise.
func BenchmarkLoginLoadAlternating(b *testing.B) { loginLoad(b, true) }

func loginLoad(b *testing.B, alternating bool) {
	binary(b)
	p := setupPostgres(b, alternating)
	envPath := filepath.Join(p.dir, ".env")
	var logins, failures atomic.Int64
	var mu sync.Mutex
	var fails []time.Time // when failed logins started
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(3 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			t0 := time.Now()
			data, err := os.ReadFile(envPath)
			if err != nil {
				continue // between rename and read: not a login
			}
			f, err := dotenv.Parse(".env", data)
			if err != nil {
				b.Error(err)
				return
			}
			u, _ := f.Get("DATABASE_URL")
			params, err := postgres.ParseURL(u)
			if err != nil {
				b.Error(err)
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			ok, err := postgres.TryLogin(ctx, params)
			cancel()
			logins.Add(1)
			if err != nil && !errors.Is(err, postgres.ErrAuthFailed) {
				b.Error(err)
				return
			}
			if !ok {
				failures.Add(1)
				mu.Lock()
				fails = append(fails, t0)
				mu.Unlock()
			}
		}
	}()
	time.Sleep(100 * time.Millisecond) // the loop is running before the first rotation
	var ends []time.Time               // when each rotation ended
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		p.run(b, "rotate", "DATABASE_PASSWORD")
		ends = append(ends, time.Now())
	}
	b.StopTimer()
	time.Sleep(50 * time.Millisecond)
	close(stop)
	wg.Wait()
	// The failure window of each rotation: from its first to its last failed login.
	var window time.Duration
	j := 0
	for _, end := range ends {
		var first, last time.Time
		for ; j < len(fails) && !fails[j].After(end); j++ {
			if first.IsZero() {
				first = fails[j]
			}
			last = fails[j]
		}
		if !first.IsZero() {
			window += last.Sub(first) + 3*time.Millisecond // one tick per failed login at least
		}
	}
	b.ReportMetric(float64(logins.Load()), "logins")
	b.ReportMetric(float64(failures.Load()), "failed-logins")
	b.ReportMetric(float64(failures.Load())/float64(b.N), "failures/rotation")
	b.ReportMetric(float64(window.Microseconds())/1000/float64(b.N), "ms-window/rotation")
	if alternating && failures.Load() != 0 {
		b.Errorf("alternating: %d failed logins over %d rotations; want none", failures.Load(), b.N)
	}
}
