package bench

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/reencrypt"
)

// BenchmarkReencryptReplicaLag re-encrypts a table of REKEY_BENCH_ROWS rows
// (default 300,000) × 2 columns at full pace on a primary with a streaming
// replica on the same machine (both started here), twice: without lag
// throttling (a ceiling of 24 h: never reached) and with it (ceiling
// REKEY_BENCH_LAG_CEILING, default 1s). A sampler on its own connection
// reads the primary's pg_stat_replication every 20 ms: the largest replay
// lag and WAL not replayed that it saw, per phase. REKEY_BENCH_DURABLE=1
// turns fsync, synchronous_commit and full_page_writes on (the primary's;
// the replica replays either way).
func BenchmarkReencryptReplicaLag(b *testing.B) {
	n := 300_000
	if s := os.Getenv("REKEY_BENCH_ROWS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1000 {
			b.Fatalf("REKEY_BENCH_ROWS=%q: want an integer >= 1000", s)
		}
		n = v
	}
	ceiling := time.Second
	if s := os.Getenv("REKEY_BENCH_LAG_CEILING"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			b.Fatalf("REKEY_BENCH_LAG_CEILING=%q: want a positive duration", s)
		}
		ceiling = d
	}
	durable := os.Getenv("REKEY_BENCH_DURABLE") == "1"
	var settings []string
	if durable {
		settings = durableSettings
	}
	c := benchCluster(b, settings...)
	ctx := context.Background()
	rep, err := c.StartReplica()
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		if err := rep.Stop(); err != nil {
			b.Error(err)
		}
	}()
	dsn := c.SuperConnString("bench")
	conn, err := c.Connect(ctx, "bench")
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	cfg := rekey.ReencryptSpec{Codec: reencrypt.CodecAESGCM, Encoding: reencrypt.EncodingBase64, Columns: []string{"t.email", "t.ssn"}, Pace: rekey.PaceFull}
	keys := []rekey.Value{randValue(), randValue()}
	if err := loadReencryptTable(ctx, conn, cfg, keys[0], n); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		fmt.Printf("replica lag: %d rows x 2 columns at full pace, primary and streaming replica on one machine (PostgreSQL %s, durable=%t)\n", n, c.Version, durable)
		for phase, ceil := range []time.Duration{24 * time.Hour, ceiling} {
			for _, stmt := range []string{"VACUUM t", "CHECKPOINT"} {
				if _, err := conn.Exec(ctx, stmt); err != nil {
					b.Fatal(err)
				}
			}
			if err := rep.WaitReplayed(ctx); err != nil {
				b.Fatal(err)
			}
			spec := cfg
			spec.ReplicaLagCeiling = ceil
			var holds int
			var held time.Duration
			var mu sync.Mutex
			job := reencrypt.Job{DSN: dsn, Config: spec, Old: keys[phase%2], New: keys[(phase+1)%2], JobID: fmt.Sprintf("lag-%d-%d", i, phase),
				OnLag: func(d reencrypt.LagDecision) {
					mu.Lock()
					defer mu.Unlock()
					if d.Action == reencrypt.LagHold {
						holds++
					}
					held += d.Held
				}}
			stop := make(chan struct{})
			sampled := make(chan lagSample, 1)
			go func() { sampled <- sampleLag(ctx, c.SuperConnString("postgres"), stop) }()
			t0 := time.Now()
			res, err := reencrypt.Run(ctx, job)
			wall := time.Since(t0)
			close(stop)
			s := <-sampled
			if err != nil {
				b.Fatal(err)
			}
			if res.Reencrypted != int64(2*n) {
				b.Fatalf("re-encrypted %d values, want %d", res.Reencrypted, 2*n)
			}
			name := "without throttling"
			if phase == 1 {
				name = fmt.Sprintf("ceiling %-9s", ceil)
			}
			fmt.Printf("  %-18s  %9s  %8.0f rows/s  max replay lag %9s  max WAL behind %7.1f MiB  holds %d (%s held)  [%d samples]\n",
				name, wall.Round(time.Millisecond), float64(n)/wall.Seconds(), s.maxLag.Round(time.Millisecond), float64(s.maxBytes)/(1<<20), holds, held.Round(time.Millisecond), s.n)
			b.ReportMetric(s.maxLag.Seconds(), fmt.Sprintf("maxlag-s-%d", phase))
		}
	}
}

type lagSample struct {
	maxLag   time.Duration
	maxBytes int64
	n        int
}

// sampleLag reads the primary's pg_stat_replication every 20 ms until stop
// (a replica that has replayed everything counts as 0 behind).
func sampleLag(ctx context.Context, dsn string, stop <-chan struct{}) lagSample {
	var s lagSample
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return s
	}
	defer conn.Close(context.Background())
	for {
		var secs float64
		var bytes int64
		if err := conn.QueryRow(ctx, `SELECT coalesce(max(CASE WHEN pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn) > 0 THEN extract(epoch FROM replay_lag) END), 0)::float8,
			coalesce(max(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)), 0)::int8 FROM pg_stat_replication`).Scan(&secs, &bytes); err == nil {
			s.n++
			s.maxLag = max(s.maxLag, time.Duration(secs*float64(time.Second)))
			s.maxBytes = max(s.maxBytes, bytes)
		}
		select {
		case <-stop:
			return s
		case <-time.After(20 * time.Millisecond):
		}
	}
}
