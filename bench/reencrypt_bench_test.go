package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/reencrypt"
	"github.com/rekeyhq/rekey/internal/testkit"
)

// BenchmarkReencrypt compares, over one table of REKEY_BENCH_ROWS rows
// (default 1,000,000) × 2 AES-256-GCM columns (base64 text) in a
// throwaway cluster:
//
//	naive  a per-row loop: SELECT the rows, then per row decrypt, encrypt,
//	       one UPDATE (autocommit). Timed over the first 50,000 rows (fewer
//	       when the table is smaller) and extrapolated to the whole table.
//	rekey  reencrypt.Run in a child process (the whole job: connect,
//	       catalog, checkpoint table, all batches), its peak RSS from
//	       getrusage.
//	floor  `UPDATE t SET email = email, ssn = ssn` over the same rows in
//	       batches of the same size (by id range), no crypto: the server's
//	       cost of rewriting the rows.
//
// Every phase starts from the same table state (a warm-up rewrite, then
// VACUUM before each phase; autovacuum off for the table). It reports the
// times, rows/s and the ratios; bench/reencrypt prints them.
// REKEY_BENCH_DURABLE=1 runs the cluster with fsync, synchronous_commit
// and full_page_writes on, as a production server (the test clusters run
// without them); REKEY_BENCH_BATCH sets the batch size (default
// reencrypt.DefaultBatchSize); REKEY_BENCH_CPUPROFILE writes the rekey
// child's CPU profile.
func BenchmarkReencrypt(b *testing.B) {
	n := 1_000_000
	if s := os.Getenv("REKEY_BENCH_ROWS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1000 {
			b.Fatalf("REKEY_BENCH_ROWS=%q: want an integer >= 1000", s)
		}
		n = v
	}
	durable := os.Getenv("REKEY_BENCH_DURABLE") == "1"
	var settings []string
	if durable {
		settings = durableSettings
	}
	c := benchCluster(b, settings...)
	ctx := context.Background()
	dsn := c.SuperConnString("bench")
	conn, err := c.Connect(ctx, "bench")
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)

	cfg := rekey.ReencryptSpec{Codec: reencrypt.CodecAESGCM, Encoding: reencrypt.EncodingBase64, Columns: []string{"t.email", "t.ssn"}}
	batch := reencrypt.DefaultBatchSize
	if s := os.Getenv("REKEY_BENCH_BATCH"); s != "" {
		if batch, err = strconv.Atoi(s); err != nil || batch < 1 {
			b.Fatalf("REKEY_BENCH_BATCH=%q: want a positive integer", s)
		}
		cfg.BatchSize = batch
	}
	k1, k2 := randValue(), randValue()

	t0 := time.Now()
	if err := loadReencryptTable(ctx, conn, cfg, k1, n); err != nil {
		b.Fatal(err)
	}
	load := time.Since(t0)
	var size int64
	if err := conn.QueryRow(ctx, `SELECT pg_total_relation_size('t')`).Scan(&size); err != nil {
		b.Fatal(err)
	}
	// Warm-up: one rewrite and VACUUM, so every measured phase starts
	// from a table with one reclaimed version per row.
	if _, err := floorPass(ctx, conn, n, batch); err != nil {
		b.Fatal(err)
	}
	vacuum := func() {
		if _, err := conn.Exec(ctx, "VACUUM ANALYZE t"); err != nil {
			b.Fatal(err)
		}
		if _, err := conn.Exec(ctx, "CHECKPOINT"); err != nil {
			b.Fatal(err)
		}
	}

	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		vacuum()
		floor, err := floorPass(ctx, conn, n, batch)
		if err != nil {
			b.Fatal(err)
		}

		vacuum()
		child, err := runReencryptChild(b, dsn, cfg, k1, k2, fmt.Sprintf("bench-%d", i))
		if err != nil {
			b.Fatal(err)
		}
		if child.Result.Reencrypted != int64(2*n) || child.Result.Failed != 0 {
			b.Fatalf("rekey re-encrypted %d values (%d failed), want %d", child.Result.Reencrypted, child.Result.Failed, 2*n)
		}

		vacuum()
		naiveRows := min(50_000, n)
		naive, err := naivePass(ctx, conn, cfg, k2, k1, naiveRows)
		if err != nil {
			b.Fatal(err)
		}
		naiveAll := time.Duration(float64(naive) * float64(n) / float64(naiveRows))
		// Rows 1..naiveRows are back on k1, the others on k2: swap for the
		// next iteration by re-encrypting the rest back to k1.
		if i+1 < b.N {
			if _, err := reencrypt.Run(ctx, reencrypt.Job{DSN: dsn, Config: cfg, Old: k2, New: k1, JobID: fmt.Sprintf("back-%d", i)}); err != nil {
				b.Fatal(err)
			}
		}

		rekeyT := child.Elapsed
		fmt.Printf("reencrypt: %d rows x 2 columns (aes-256-gcm, base64 text; table %.0f MiB; loaded in %s; batch %d; %d cores; durable=%t)\n",
			n, float64(size)/(1<<20), load.Round(time.Millisecond), batch, runtime.NumCPU(), durable)
		fmt.Printf("  (a) naive per-row loop   %9s  (%s for %d rows, extrapolated)  %8.0f rows/s\n", naiveAll.Round(time.Millisecond), naive.Round(time.Millisecond), naiveRows, float64(naiveRows)/naive.Seconds())
		fmt.Printf("  (b) rekey reencrypt.Run  %9s  %8.0f rows/s  peak RSS %.1f MiB  (client CPU %s)\n", rekeyT.Round(time.Millisecond), float64(n)/rekeyT.Seconds(), float64(child.MaxRSSKiB)/1024, child.CPU.Round(time.Millisecond))
		fmt.Printf("  (c) floor UPDATE c = c   %9s  %8.0f rows/s\n", floor.Round(time.Millisecond), float64(n)/floor.Seconds())
		fmt.Printf("  rekey / floor = %.2fx   naive / rekey = %.1fx\n", rekeyT.Seconds()/floor.Seconds(), naiveAll.Seconds()/rekeyT.Seconds())
		b.ReportMetric(rekeyT.Seconds(), "rekey-s")
		b.ReportMetric(floor.Seconds(), "floor-s")
		b.ReportMetric(naiveAll.Seconds(), "naive-s")
		b.ReportMetric(rekeyT.Seconds()/floor.Seconds(), "rekey/floor")
		b.ReportMetric(naiveAll.Seconds()/rekeyT.Seconds(), "naive/rekey")
		b.ReportMetric(float64(child.MaxRSSKiB)/1024, "peak-RSS-MiB")
	}
}

// loadReencryptTable creates t(id bigint primary key, name, email, ssn)
// with n rows encrypted under k, generated by all cores and streamed
// with COPY.
func loadReencryptTable(ctx context.Context, conn *pgx.Conn, cfg rekey.ReencryptSpec, k rekey.Value, n int) error {
	if _, err := conn.Exec(ctx, `CREATE TABLE t (id bigint PRIMARY KEY, name text NOT NULL, email text, ssn text) WITH (autovacuum_enabled = off)`); err != nil {
		return err
	}
	const chunk = 10_000
	type rowsChunk struct {
		rows [][]any
		err  error
	}
	workers := runtime.NumCPU()
	chunks := make([]chan rowsChunk, (n+chunk-1)/chunk)
	for i := range chunks {
		chunks[i] = make(chan rowsChunk, 1)
	}
	sem := make(chan struct{}, workers+1)
	go func() {
		for ci := range chunks {
			sem <- struct{}{}
			go func(ci int) {
				ciph, err := reencrypt.NewCipher(cfg, k, nil)
				if err != nil {
					chunks[ci] <- rowsChunk{err: err}
					return
				}
				defer ciph.Close()
				var rows [][]any
				for id := ci*chunk + 1; id <= min(n, (ci+1)*chunk); id++ {
					e, err1 := ciph.Encrypt([]byte(fmt.Sprintf("patient%d@example.com", id)))
					s, err2 := ciph.Encrypt([]byte(fmt.Sprintf("900-%02d-%04d", id%100, id%10000)))
					if err := errors.Join(err1, err2); err != nil {
						chunks[ci] <- rowsChunk{err: err}
						return
					}
					rows = append(rows, []any{int64(id), "Patient " + strconv.Itoa(id), string(e), string(s)})
				}
				chunks[ci] <- rowsChunk{rows: rows}
			}(ci)
		}
	}()
	ci := 0
	var cur [][]any
	src := pgx.CopyFromFunc(func() ([]any, error) {
		for len(cur) == 0 {
			if ci == len(chunks) {
				return nil, nil
			}
			c := <-chunks[ci]
			<-sem
			ci++
			if c.err != nil {
				return nil, c.err
			}
			cur = c.rows
		}
		r := cur[0]
		cur = cur[1:]
		return r, nil
	})
	if _, err := conn.CopyFrom(ctx, pgx.Identifier{"t"}, []string{"id", "name", "email", "ssn"}, src); err != nil {
		return err
	}
	_, err := conn.Exec(ctx, "VACUUM ANALYZE t")
	return err
}

// floorPass rewrites every row without crypto, in keyset batches.
func floorPass(ctx context.Context, conn *pgx.Conn, n, batch int) (time.Duration, error) {
	t0 := time.Now()
	for lo := 0; lo < n; lo += batch {
		if _, err := conn.Exec(ctx, `UPDATE t SET email = email, ssn = ssn WHERE id > $1 AND id <= $2`, lo, lo+batch); err != nil {
			return 0, err
		}
	}
	return time.Since(t0), nil
}

// naivePass re-encrypts rows 1..rows from k to k2 the naive way.
func naivePass(ctx context.Context, conn *pgx.Conn, cfg rekey.ReencryptSpec, from, to rekey.Value, rows int) (time.Duration, error) {
	oldC, err := reencrypt.NewCipher(cfg, from, nil)
	if err != nil {
		return 0, err
	}
	defer oldC.Close()
	newC, err := reencrypt.NewCipher(cfg, to, nil)
	if err != nil {
		return 0, err
	}
	defer newC.Close()
	t0 := time.Now()
	type rec struct {
		ID         int64
		Email, SSN string
	}
	rs, err := conn.Query(ctx, `SELECT id, email, ssn FROM t WHERE id <= $1 ORDER BY id`, rows)
	if err != nil {
		return 0, err
	}
	all, err := pgx.CollectRows(rs, pgx.RowToStructByPos[rec])
	if err != nil {
		return 0, err
	}
	re := func(v string) (string, error) {
		pt, err := oldC.Decrypt([]byte(v))
		if err != nil {
			return "", err
		}
		ct, err := newC.Encrypt(pt)
		return string(ct), err
	}
	for _, r := range all {
		e, err1 := re(r.Email)
		s, err2 := re(r.SSN)
		if err := errors.Join(err1, err2); err != nil {
			return 0, err
		}
		if _, err := conn.Exec(ctx, `UPDATE t SET email = $1, ssn = $2 WHERE id = $3`, e, s, r.ID); err != nil {
			return 0, err
		}
	}
	return time.Since(t0), nil
}

type reencryptChildOut struct {
	Result    reencrypt.Result
	Elapsed   time.Duration
	CPU       time.Duration // user+system time of the child
	MaxRSSKiB int64
}

const reencryptChildEnv = "REKEY_BENCH_REENCRYPT_CHILD"

type reencryptChildSpec struct {
	DSN      string
	Config   rekey.ReencryptSpec
	Old, New string
	JobID    string
}

// runReencryptChild runs reencrypt.Run in a child process (this test
// binary, TestReencryptBenchChild), so that its peak RSS is its own. The
// spec (DSN and keys) goes through a 0600 file, not argv.
func runReencryptChild(b *testing.B, dsn string, cfg rekey.ReencryptSpec, from, to rekey.Value, job string) (*reencryptChildOut, error) {
	spec := reencryptChildSpec{DSN: dsn, Config: cfg, Old: from.RevealString(), New: to.RevealString(), JobID: job}
	cmd := testkit.Child(b, reencryptChildEnv, spec, "-test.run=^TestReencryptBenchChild$", "-test.count=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("reencrypt child: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	out := &reencryptChildOut{}
	line := ""
	for _, l := range strings.Split(stdout.String(), "\n") {
		if strings.HasPrefix(l, "REENCRYPT-RESULT ") {
			line = strings.TrimPrefix(l, "REENCRYPT-RESULT ")
		}
	}
	if err := json.Unmarshal([]byte(line), out); err != nil {
		return nil, fmt.Errorf("reencrypt child: no result: %v\n%s", err, stdout.String())
	}
	if kib, ok := testkit.PeakRSSKiB(cmd.ProcessState); ok {
		out.MaxRSSKiB = kib
	}
	return out, nil
}

// TestReencryptBenchChild is BenchmarkReencrypt's child: it does nothing
// unless REKEY_BENCH_REENCRYPT_CHILD names a spec file.
func TestReencryptBenchChild(t *testing.T) {
	path := os.Getenv(reencryptChildEnv)
	if path == "" {
		return
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var s reencryptChildSpec
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatal(err)
	}
	if p := os.Getenv("REKEY_BENCH_CPUPROFILE"); p != "" {
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			t.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	var mu sync.Mutex
	t0 := time.Now()
	res, err := reencrypt.Run(context.Background(), reencrypt.Job{
		DSN: s.DSN, Config: s.Config, Old: rekey.NewValueString(s.Old), New: rekey.NewValueString(s.New), JobID: s.JobID,
		Progress: func(reencrypt.Progress) { mu.Lock(); mu.Unlock() },
	})
	el := time.Since(t0)
	if err != nil {
		t.Fatal(err)
	}
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	out, _ := json.Marshal(reencryptChildOut{Result: *res, Elapsed: el, CPU: time.Duration(ru.Utime.Nano() + ru.Stime.Nano())})
	fmt.Printf("REENCRYPT-RESULT %s\n", out)
}
