package reencrypt

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/testkit"
)

// plaintextSum is a checksum over (id, plaintext of each column) of every
// row, in id order.
func plaintextSum(t testing.TB, conn *pgx.Conn, table string, c *Cipher, cols ...string) ([32]byte, int) {
	t.Helper()
	h := sha256.New()
	all := readAll(t, conn, table, cols...)
	for id := int64(1); id <= int64(len(all))+1000; id++ {
		vals, ok := all[id]
		if !ok {
			continue
		}
		binary.Write(h, binary.BigEndian, id)
		for i, v := range vals {
			pt, err := c.Decrypt(v)
			if err != nil {
				t.Fatalf("row %d %s does not decrypt with the new key", id, cols[i])
			}
			binary.Write(h, binary.BigEndian, int32(len(pt)))
			h.Write(pt)
		}
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum, len(all)
}

// expectedSum is plaintextSum of the seeded table of n rows.
func expectedSum(n int, cols ...string) [32]byte {
	h := sha256.New()
	for id := int64(1); id <= int64(n); id++ {
		binary.Write(h, binary.BigEndian, id)
		for _, c := range cols {
			pt := plaintextOf(id, c)
			binary.Write(h, binary.BigEndian, int32(len(pt)))
			h.Write([]byte(pt))
		}
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum
}

// TestKill9Resume: a 200,000-row re-encryption running in a child process
// is killed with SIGKILL at (seeded) random moments, several times, and
// resumed each time; in the end every row decrypts with the new key to
// its original plaintext (the checksum over all plaintexts is unchanged),
// no row is lost, and the job's checkpoint is gone.
func TestKill9Resume(t *testing.T) {
	const n = 200_000
	dsn, conn := newDB(t, true)
	cfg := rekey.ReencryptSpec{Columns: []string{"patients.email", "patients.ssn"}, BatchSize: 500}
	oldK, newK := newKey32(t, "base64"), newKey32(t, "base64")
	seedTable(t, conn, "patients", cfg, mustCipher(t, cfg, oldK), n)
	want := expectedSum(n, "email", "ssn")

	spec := childSpec{DSN: dsn, Config: cfg, Old: oldK.RevealString(), New: newK.RevealString(), JobID: "kill9"}
	rng := rand.New(rand.NewPCG(4, 2))
	kills, finished := 0, false
	var checkpoints []int64
	for attempt := 0; attempt < 12 && !finished; attempt++ {
		cmd := testkit.Child(t, childEnv, spec)
		out := &syncBuffer{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		var err error
		if attempt < 6 {
			delay := time.Duration(100+rng.IntN(500)) * time.Millisecond
			select {
			case err = <-done:
				finished = err == nil
			case <-time.After(delay):
				_ = cmd.Process.Signal(syscall.SIGKILL)
				err = <-done
				if cmd.ProcessState.Success() {
					finished = true
				} else {
					kills++
				}
			}
		} else {
			err = <-done
			finished = err == nil
		}
		if !finished && kills == 0 {
			t.Fatalf("child failed: %v\n%s", err, out.String())
		}
		var rows int64 = -1
		_ = conn.QueryRow(testCtx(t), `SELECT rows_done FROM rekey_reencrypt_checkpoint WHERE job_id = 'kill9'`).Scan(&rows)
		checkpoints = append(checkpoints, rows)
	}
	t.Logf("killed %d times; checkpoints seen after each attempt: %v", kills, checkpoints)
	if !finished {
		t.Fatal("the job never finished")
	}
	if kills < 3 {
		t.Fatalf("only %d kills landed mid-run", kills)
	}
	got, rows := plaintextSum(t, conn, "patients", mustCipher(t, cfg, newK), "email", "ssn")
	if rows != n || got != want {
		t.Fatalf("%d rows, checksum %x, want %d rows, %x", rows, got[:8], n, want[:8])
	}
	checkNoCheckpointTable(t, conn)
}

type syncBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b = append(s.b, p...)
	return len(p), nil
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(s.b)
}

// TestConcurrentWriter: an application keeps updating random rows — with
// the old key (an instance not restarted yet) and with the new key —
// before, during and after the re-encryption. Every one of its writes
// survives: each row it wrote ends with the plaintext of its last write;
// every other row keeps its original plaintext; a second run (the
// application stopped) leaves every value on the new key.
func TestConcurrentWriter(t *testing.T) {
	const n = 20_000
	dsn, conn := newDB(t, true)
	cfg := rekey.ReencryptSpec{Columns: []string{"patients.email", "patients.ssn"}, BatchSize: 200}
	oldK, newK, oldC, newC := keyPair(t, cfg)
	seedTable(t, conn, "patients", cfg, oldC, n)

	app, err := pgx.Connect(testCtx(t), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close(context.Background())
	last := map[int64][2]string{} // id → last plaintexts written (email, ssn); "" = not written
	var writes atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		rng := rand.New(rand.NewPCG(7, 7))
		for seq := 0; ; seq++ {
			select {
			case <-stop:
				return
			default:
			}
			id := int64(1 + rng.IntN(n))
			c := oldC
			if rng.IntN(2) == 0 {
				c = newC
			}
			col := rng.IntN(2)
			pt := fmt.Sprintf("write-%d-%d", id, seq)
			v, err := c.Encrypt([]byte(pt))
			if err != nil {
				t.Error(err)
				return
			}
			if _, err := app.Exec(context.Background(), fmt.Sprintf(`UPDATE patients SET %s = $1 WHERE id = $2`, []string{"email", "ssn"}[col]), string(v), id); err != nil {
				t.Error(err)
				return
			}
			l := last[id]
			l[col] = pt
			last[id] = l
			writes.Add(1)
		}
	}()
	for writes.Load() < 100 {
		time.Sleep(time.Millisecond)
	}
	res, err := Run(testCtx(t), job(dsn, cfg, oldK, newK, "concurrent"))
	during := writes.Load()
	for writes.Load() < during+100 {
		time.Sleep(time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d application writes; the run revisited %d rows; %+v", writes.Load(), res.Revisited, res.Totals)

	check := func(newOnly bool) {
		all := readAll(t, conn, "patients", "email", "ssn")
		if len(all) != n {
			t.Fatalf("%d rows", len(all))
		}
		for id, vals := range all {
			for c, v := range vals {
				want := last[id][c]
				if want == "" {
					want = plaintextOf(id, []string{"email", "ssn"}[c])
				}
				pt, err := newC.Decrypt(v)
				if err != nil && !newOnly {
					pt, err = oldC.Decrypt(v)
				}
				if err != nil || string(pt) != want {
					t.Fatalf("row %d column %d: %q (%v), want %q", id, c, pt, err, want)
				}
			}
		}
	}
	check(false)
	res, err = Run(testCtx(t), job(dsn, cfg, oldK, newK, "concurrent-2"))
	if err != nil {
		t.Fatal(err)
	}
	check(true)
	if errors.Is(err, ErrUndecryptable) {
		t.Fatal(err)
	}
	_ = rekey.Redacted
}
