package bench

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rekeyhq/rekey/dotenv"
	"github.com/rekeyhq/rekey/postgres"
)

// BenchmarkLoginLoadSingle measures the failure window of the single
// strategy: a client opens a fresh connection every few milliseconds with
// whatever DATABASE_URL the .env holds at that moment (as an app restarting
// or a connection pool growing would) while `rekey rotate DATABASE_PASSWORD`
// runs b.N times. With one role, a login that read the .env just before the
// publish but reaches the server after ALTER ROLE fails: the window is
// between ALTER ROLE and the .env write. Reported: logins, failures, and
// failures per rotation. (The alternating strategy, which should show zero,
// is not built yet.)
func BenchmarkLoginLoadSingle(b *testing.B) {
	binary(b)
	p := setupPostgres(b)
	envPath := filepath.Join(p.dir, ".env")
	var logins, failures atomic.Int64
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
			if err != nil && !strings.Contains(err.Error(), "refused") {
				b.Error(err)
				return
			}
			if !ok {
				failures.Add(1)
			}
		}
	}()
	time.Sleep(100 * time.Millisecond) // the loop is running before the first rotation
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		p.run(b, "rotate", "DATABASE_PASSWORD")
	}
	b.StopTimer()
	time.Sleep(50 * time.Millisecond)
	close(stop)
	wg.Wait()
	b.ReportMetric(float64(logins.Load()), "logins")
	b.ReportMetric(float64(failures.Load()), "failed-logins")
	b.ReportMetric(float64(failures.Load())/float64(b.N), "failures/rotation")
}
