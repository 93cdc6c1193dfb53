// Package bench holds rekey's benchmarks. They build the real binary and time
// whole commands (wall clock, as a user waits for them) against a store of
// 1,000 secrets × 100 versions; run `bench/run` for the figures.
package bench

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/engine"
	"github.com/rekeyhq/rekey/internal/sqlite"
	"github.com/rekeyhq/rekey/internal/testkit"
	"github.com/rekeyhq/rekey/seal"
)

const (
	nSecrets  = 1000
	nVersions = 100
)

// binary is the rekey binary (no build tags), built once per process.
func binary(tb testing.TB) string { return testkit.GoBuild(tb, "../cmd/rekey") }

func randValue() rekey.Value {
	b := make([]byte, 32)
	rand.Read(b)
	return rekey.NewValueString(base64.StdEncoding.EncodeToString(b))
}

// fixture is a project under construction in dir: a store under a new
// master key, and the rekey.yaml and .env of its secrets (all generated).
type fixture struct {
	dir       string
	key       seal.Key
	st        *sqlite.DB
	yaml, env strings.Builder
}

func newFixture(dir string) (*fixture, error) {
	k, err := seal.GenerateKey()
	if err != nil {
		return nil, err
	}
	st, err := sqlite.Create(context.Background(), filepath.Join(dir, ".rekey", "rekey.db"), k, "")
	if err != nil {
		return nil, err
	}
	f := &fixture{dir: dir, key: k, st: st}
	f.yaml.WriteString("version: 1\nstore:\n  path: .rekey/rekey.db\n  master_key: env\nenvironments:\n  production:\n    targets:\n      app: {type: dotenv, path: .env}\nsecrets:\n")
	return f, nil
}

// secret adds name to rekey.yaml, and to the .env with its current value.
func (f *fixture) secret(name, current string) {
	fmt.Fprintf(&f.yaml, "  %s:\n    kind: generated\n    generator: {bytes: 32, encoding: base64}\n    rotate_every: 180d\n", name)
	fmt.Fprintf(&f.env, "%s=%s\n", name, current)
}

// finish closes the store, writes rekey.yaml, the .env and the extra files
// (name, content; mode 0644), and the master key to keyFile, for profiling
// by hand (REKEY_CPUPROFILE): it is not a managed secret.
func (f *fixture) finish(keyFile string, extra ...string) error {
	f.st.Close()
	files := append([]string{"rekey.yaml", f.yaml.String(), ".env", f.env.String()}, extra...)
	for i := 0; i < len(files); i += 2 {
		mode := os.FileMode(0o644)
		if files[i] == ".env" {
			mode = 0o600
		}
		if err := os.WriteFile(filepath.Join(f.dir, files[i]), []byte(files[i+1]), mode); err != nil {
			return err
		}
	}
	os.WriteFile(keyFile, []byte(f.key.Encode()), 0o600)
	return nil
}

// project is a folder the benchmarks run rekey in.
type project struct {
	dir    string
	env    []string // the environment of every rekey child
	okExit int      // an exit status that is fine besides 0
}

// setup writes rekey.yaml, a .env and a store of nSecrets × nVersions, each
// version created with the audit records a real rotation writes.
func setup(tb testing.TB) *project {
	// Not tb.TempDir: the benchmark function runs more than once (b.N = 1, then 20).
	dir, err := os.MkdirTemp("", "rekey-bench-")
	if err != nil {
		tb.Fatal(err)
	}
	f, err := newFixture(dir)
	if err != nil {
		tb.Fatal(err)
	}
	start := time.Now().Add(-time.Duration(nVersions) * 24 * time.Hour)
	for i := 0; i < nSecrets; i++ {
		name := fmt.Sprintf("SECRET_%04d", i)
		var cur rekey.Value
		err := f.st.Update(context.Background(), func(tx rekey.Tx) error {
			for n := 1; n <= nVersions; n++ {
				label := rekey.LabelNone
				switch n {
				case nVersions:
					label = rekey.LabelCurrent
				case nVersions - 1:
					label = rekey.LabelPrevious
				}
				v := randValue()
				created := start.Add(time.Duration(n) * 24 * time.Hour)
				rotID := fmt.Sprintf("%s-%08x", created.UTC().Format("20060102T150405Z"), mrand.Uint32())
				ver, err := tx.AddVersion("production", name, rekey.NewVersion{Value: v, Label: label, Source: rekey.SourceGenerated, RotationID: rotID, CreatedAt: created})
				if err != nil {
					return err
				}
				if label == rekey.LabelCurrent {
					cur = v
				}
				// The two records a rotation writes (create; publish+finish), with their details.
				rot := "rotation " + rotID
				if _, err := tx.Audit(rekey.AuditEntry{Actor: "bench", Action: "rotate.create", Env: "production", Secret: name, Version: ver.N, Fingerprint: ver.Fingerprint, Outcome: "ok", Detail: rot + " (manual)"}); err != nil {
					return err
				}
				if _, err := tx.Audit(rekey.AuditEntry{Actor: "bench", Action: "rotate.finish", Env: "production", Secret: name, Version: ver.N, Fingerprint: ver.Fingerprint, Outcome: "ok", Detail: rot + "; published to app"}); err != nil {
					return err
				}
				// The engine keeps the journals of the newest engine.KeepRotations rotations.
				if i*nVersions+n > nSecrets*nVersions-engine.KeepRotations {
					t := created
					r := &rekey.Rotation{ID: rotID, Env: "production", Mode: rekey.ModeManual, State: rekey.StateDone, Actor: "bench", Started: t, Ended: t.Add(60 * time.Millisecond),
						Secrets: map[string]int{name: ver.N}, Steps: []rekey.Step{
							{Name: rekey.StepCreate, Started: t, Ended: t.Add(20 * time.Millisecond), Outcome: "ok"},
							{Name: rekey.StepPublish, Started: t.Add(20 * time.Millisecond), Ended: t.Add(30 * time.Millisecond), Outcome: "ok"},
							{Name: rekey.StepVerify, Started: t.Add(30 * time.Millisecond), Ended: t.Add(31 * time.Millisecond), Outcome: "ok"},
							{Name: rekey.StepFinish, Started: t.Add(31 * time.Millisecond), Ended: t.Add(60 * time.Millisecond), Outcome: "ok"},
						}}
					if err := tx.PutRotation(r); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if err != nil {
			tb.Fatal(err)
		}
		f.secret(name, cur.RevealString())
	}
	if err := f.finish(filepath.Join(dir, ".bench-master-key")); err != nil {
		tb.Fatal(err)
	}
	p := &project{dir: dir, env: append(os.Environ(), "REKEY_MASTER_KEY="+f.key.Encode()), okExit: 8} // 8: something due; fine here
	p.run(tb, "config", "trust")                                                                      // the fixture wrote rekey.yaml: approve it, as its operator would
	return p
}

// run runs rekey with args in the project and returns its wall time.
func (p *project) run(tb testing.TB, args ...string) time.Duration {
	tb.Helper()
	_, d := runIn(tb, binary(tb), p.dir, p.env, p.okExit, args...)
	return d
}

// runIn runs bin with args in dir with env, and returns its output (stdout
// and stderr) and its wall time; it fails unless bin exits 0 or okExit.
func runIn(tb testing.TB, bin, dir string, env []string, okExit int, args ...string) (string, time.Duration) {
	tb.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir, cmd.Env = dir, env
	t0 := time.Now()
	out, err := cmd.CombinedOutput()
	d := time.Since(t0)
	var ee *exec.ExitError
	if err != nil && (okExit == 0 || !errors.As(err, &ee) || ee.ExitCode() != okExit) {
		tb.Fatalf("%s %s: %v\n%s", filepath.Base(bin), strings.Join(args, " "), err, out)
	}
	return string(out), d
}

var (
	projOnce sync.Once
	proj     *project
)

func shared(b *testing.B) *project {
	projOnce.Do(func() { proj = setup(b) })
	return proj
}

// reportTimes reports the median and the slowest of times.
func reportTimes(b *testing.B, times []time.Duration) {
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	b.ReportMetric(float64(times[len(times)/2].Microseconds())/1000, "ms-median")
	b.ReportMetric(float64(times[len(times)-1].Microseconds())/1000, "ms-max")
}

// timeRuns runs rekey with args(i) b.N times in p and returns each wall time.
func timeRuns(b *testing.B, p *project, args func(i int) []string) []time.Duration {
	binary(b)
	var times []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		times = append(times, p.run(b, args(i)...))
	}
	return times
}

// report reports the times and the size of the shared store, whole and by table.
func report(b *testing.B, times []time.Duration) {
	reportTimes(b, times)
	path := filepath.Join(proj.dir, ".rekey", "rekey.db")
	st, err := os.Stat(path)
	if err == nil {
		b.ReportMetric(float64(st.Size())/(1<<20), "store-MiB")
	}
	// Split the file: sealed versions versus the audit log (SQLite's dbstat).
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	for _, t := range []struct{ table, unit string }{{"version", "versions-MiB"}, {"audit", "audit-MiB"}, {"audit_block", "audit-packed-MiB"}, {"rotation", "journal-MiB"}} {
		var size int64
		if err := db.QueryRow(`SELECT COALESCE(SUM(pgsize), 0) FROM dbstat WHERE name = ? OR name LIKE 'sqlite_autoindex_' || ? || '_%'`, t.table, t.table).Scan(&size); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(size)/(1<<20), t.unit)
	}
}

// BenchmarkStatus times `rekey status` on 1,000 secrets × 100 versions.
func BenchmarkStatus(b *testing.B) {
	report(b, timeRuns(b, shared(b), func(int) []string { return []string{"status"} }))
}

// BenchmarkRotateOne times `rekey rotate SECRET_0500` (whole process: open,
// lock, recover, create, publish to a 1,000-line .env, verify, finish).
func BenchmarkRotateOne(b *testing.B) {
	report(b, timeRuns(b, shared(b), func(i int) []string { return []string{"rotate", fmt.Sprintf("SECRET_%04d", 500+i%10)} }))
}
