package bench

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/reencrypt"
)

// BenchmarkReencryptScale re-encrypts one table of REKEY_BENCH_ROWS rows
// (default 10,000,000) × 2 AES-256-GCM columns on a durable cluster
// (fsync, synchronous_commit, full_page_writes on; 1 GB max_wal_size, as
// PostgreSQL ships) with reencrypt.Run in a child process at
// REKEY_BENCH_PACE (default full; adaptive for the adaptive pace with no
// load) and reports (issue 14, item 5): the run's wall time and rows/s,
// its peak RSS (getrusage of the child), the WAL it generated
// (pg_current_wal_lsn before and after, nothing else writing), per row
// and against the table's size, and the longest transaction any of the
// run's connections held open (pg_stat_activity sampled every 20 ms:
// no transaction is longer than a batch), next to the slowest batch
// statement's duration bound (the same sampling: the longest
// "active" state of a run's connection).
//
//	REKEY_BENCH_ROWS=10000000 go test -run '^$' -bench '^BenchmarkReencryptScale$' -benchtime 1x -count 1 -timeout 60m ./bench/
func BenchmarkReencryptScale(b *testing.B) {
	n := impactEnvInt(b, "REKEY_BENCH_ROWS", 10_000_000, 1000)
	pace := rekey.PaceFull
	if p := os.Getenv("REKEY_BENCH_PACE"); p != "" {
		pace = p
	}
	c := benchCluster(b, append(durableSettings, "ALTER SYSTEM SET max_wal_size = '1GB'", "ALTER SYSTEM SET autovacuum = off")...)
	ctx := context.Background()
	dsn := c.SuperConnString("bench")
	conn, err := c.Connect(ctx, "bench")
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	cfg := rekey.ReencryptSpec{Codec: reencrypt.CodecAESGCM, Encoding: reencrypt.EncodingBase64, Columns: []string{"t.email", "t.ssn"},
		Mode: rekey.ReencryptOnline, Pace: pace}
	k1, k2 := randValue(), randValue()
	t0 := time.Now()
	if err := loadReencryptTable(ctx, conn, cfg, k1, n); err != nil {
		b.Fatal(err)
	}
	load := time.Since(t0)
	for _, s := range []string{"VACUUM ANALYZE t", "CHECKPOINT"} {
		if _, err := conn.Exec(ctx, s); err != nil {
			b.Fatal(err)
		}
	}
	var heap, total int64
	if err := conn.QueryRow(ctx, `SELECT pg_relation_size('t'), pg_total_relation_size('t')`).Scan(&heap, &total); err != nil {
		b.Fatal(err)
	}
	est, err := reencrypt.EstimateRun(ctx, reencrypt.Job{DSN: dsn, Config: cfg, Old: k1, New: k2, JobID: "scale-estimate"})
	if err != nil {
		b.Fatal(err)
	}
	var lsn0 string
	if err := conn.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text`).Scan(&lsn0); err != nil {
		b.Fatal(err)
	}
	w := watchTransactions(ctx, b, c.SuperConnString("postgres"))
	b.ResetTimer()
	child, err := runReencryptChild(b, dsn, cfg, k1, k2, "scale")
	b.StopTimer()
	longestXact, longestActive := w.stop()
	if err != nil {
		b.Fatal(err)
	}
	if child.Result.Reencrypted != int64(2*n) || child.Result.Failed != 0 {
		b.Fatalf("re-encrypted %d values (%d failed), want %d", child.Result.Reencrypted, child.Result.Failed, 2*n)
	}
	var wal int64
	if err := conn.QueryRow(ctx, `SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn)::int8`, lsn0).Scan(&wal); err != nil {
		b.Fatal(err)
	}
	mib := func(v int64) float64 { return float64(v) / (1 << 20) }
	fmt.Printf("scale: %d rows x 2 columns (aes-256-gcm, base64 text; heap %.0f MiB, with indexes and TOAST %.0f MiB; loaded in %s), durable cluster, %d cores, pace %s, batch %d\n",
		n, mib(heap), mib(total), load.Round(time.Second), runtime.NumCPU(), pace, reencrypt.DefaultBatchSize)
	fmt.Printf("  wall %s  %.0f rows/s  peak RSS %.1f MiB  client CPU %s\n", child.Elapsed.Round(100*time.Millisecond), float64(n)/child.Elapsed.Seconds(),
		float64(child.MaxRSSKiB)/1024, child.CPU.Round(100*time.Millisecond))
	fmt.Printf("  WAL %.0f MiB (%.0f bytes/row, %.2fx the heap); rotate --dry-run's model said %.0f MiB (measured/model %.2f)\n",
		mib(wal), float64(wal)/float64(n), float64(wal)/float64(heap), mib(est.WALBytes()), float64(wal)/float64(max(1, est.WALBytes())))
	for _, t := range est.Tables {
		fmt.Printf("  estimate of %s: %d rows, read+crypto %.0f rows/s (sample of %d: the run's upper bound)\n", t.Table, t.Rows, t.ReadCryptoRowsPerSecond, t.SampleRows)
	}
	fmt.Printf("  longest transaction of the run's connections %s, longest statement %s (sampled every 20ms)\n", longestXact.Round(time.Millisecond), longestActive.Round(time.Millisecond))
	b.ReportMetric(child.Elapsed.Seconds(), "wall-s")
	b.ReportMetric(float64(n)/child.Elapsed.Seconds(), "rows/s")
	b.ReportMetric(float64(child.MaxRSSKiB)/1024, "peak-RSS-MiB")
	b.ReportMetric(mib(wal), "WAL-MiB")
	b.ReportMetric(longestXact.Seconds()*1000, "longest-xact-ms")
}

// xactWatch samples pg_stat_activity for the longest open transaction
// and the longest running statement of the connections named "rekey".
type xactWatch struct {
	cancel          context.CancelFunc
	done            chan struct{}
	mu              sync.Mutex
	xact, statement time.Duration
}

func watchTransactions(ctx context.Context, b *testing.B, dsn string) *xactWatch {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	w := &xactWatch{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		defer conn.Close(context.Background())
		for wctx.Err() == nil {
			var xact, stmt time.Duration
			err := conn.QueryRow(wctx, `SELECT coalesce(max(now() - xact_start), '0'), coalesce(max(now() - query_start) FILTER (WHERE state = 'active'), '0')
				FROM pg_stat_activity WHERE application_name = 'rekey' AND xact_start IS NOT NULL`).Scan(&xact, &stmt)
			if err == nil {
				w.mu.Lock()
				w.xact, w.statement = max(w.xact, xact), max(w.statement, stmt)
				w.mu.Unlock()
			}
			select {
			case <-wctx.Done():
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	return w
}

func (w *xactWatch) stop() (xact, statement time.Duration) {
	w.cancel()
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.xact, w.statement
}
