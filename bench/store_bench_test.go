// Package bench holds rekey's benchmarks. They build the real binary and time
// whole commands (wall clock, as a user waits for them) against a store of
// 1,000 secrets × 100 versions; run `bench/run` for the figures.
package bench

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
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
	"github.com/rekeyhq/rekey/seal"
	"github.com/rekeyhq/rekey/internal/sqlite"
)

const (
	nSecrets  = 1000
	nVersions = 100
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func binary(tb testing.TB) string {
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "rekey-bench-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "rekey")
		out, err := exec.Command("go", "build", "-o", binPath, "../cmd/rekey").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		tb.Fatal(buildErr)
	}
	return binPath
}

func randValue() rekey.Value {
	b := make([]byte, 32)
	rand.Read(b)
	return rekey.NewValueString(base64.StdEncoding.EncodeToString(b))
}

type project struct {
	dir, key string
}

// setup writes rekey.yaml, a .env and a store of nSecrets × nVersions, each
// version created with the audit records a real rotation writes.
func setup(tb testing.TB) *project {
	// Not tb.TempDir: the benchmark function runs more than once (b.N = 1, then 20).
	dir, err := os.MkdirTemp("", "rekey-bench-")
	if err != nil {
		tb.Fatal(err)
	}
	k, err := seal.GenerateKey()
	if err != nil {
		tb.Fatal(err)
	}
	ctx := context.Background()
	st, err := sqlite.Create(ctx, filepath.Join(dir, ".rekey", "rekey.db"), k, "")
	if err != nil {
		tb.Fatal(err)
	}
	var yaml, env strings.Builder
	yaml.WriteString("version: 1\nstore:\n  path: .rekey/rekey.db\n  master_key: env\nenvironments:\n  production:\n    targets:\n      app: {type: dotenv, path: .env}\nsecrets:\n")
	start := time.Now().Add(-time.Duration(nVersions) * 24 * time.Hour)
	for i := 0; i < nSecrets; i++ {
		name := fmt.Sprintf("SECRET_%04d", i)
		fmt.Fprintf(&yaml, "  %s:\n    kind: generated\n    generator: {bytes: 32, encoding: base64}\n    rotate_every: 180d\n", name)
		var cur rekey.Value
		err := st.Update(ctx, func(tx rekey.Tx) error {
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
				// The engine keeps the journals of the newest rekey.KeepRotations rotations.
				if i*nVersions+n > nSecrets*nVersions-rekey.KeepRotations {
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
		fmt.Fprintf(&env, "%s=%s\n", name, cur.RevealString())
	}
	st.Close()
	if err := os.WriteFile(filepath.Join(dir, "rekey.yaml"), []byte(yaml.String()), 0o644); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".env"), []byte(env.String()), 0o600); err != nil {
		tb.Fatal(err)
	}
	// The fixture's key, for profiling by hand (REKEY_CPUPROFILE); not a managed secret.
	os.WriteFile(filepath.Join(dir, ".bench-master-key"), []byte(k.Encode()), 0o600)
	p := &project{dir: dir, key: k.Encode()}
	p.run(tb, "config", "trust") // the fixture wrote rekey.yaml: approve it, as its operator would
	return p
}

func (p *project) run(tb testing.TB, args ...string) time.Duration {
	cmd := exec.Command(binary(tb), args...)
	cmd.Dir = p.dir
	cmd.Env = append(os.Environ(), "REKEY_MASTER_KEY="+p.key)
	t0 := time.Now()
	out, err := cmd.CombinedOutput()
	d := time.Since(t0)
	if err != nil {
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 8 { // 8: something due; fine here
			tb.Fatalf("rekey %v: %v\n%s", args, err, out)
		}
	}
	return d
}

var (
	projOnce sync.Once
	proj     *project
)

func shared(b *testing.B) *project {
	projOnce.Do(func() { proj = setup(b) })
	return proj
}

func report(b *testing.B, times []time.Duration) {
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	b.ReportMetric(float64(times[len(times)/2].Microseconds())/1000, "ms-median")
	b.ReportMetric(float64(times[len(times)-1].Microseconds())/1000, "ms-max")
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
	p := shared(b)
	binary(b)
	var times []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		times = append(times, p.run(b, "status"))
	}
	report(b, times)
}

// BenchmarkRotateOne times `rekey rotate SECRET_0500` (whole process: open,
// lock, recover, create, publish to a 1,000-line .env, verify, finish).
func BenchmarkRotateOne(b *testing.B) {
	p := shared(b)
	binary(b)
	var times []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		times = append(times, p.run(b, "rotate", fmt.Sprintf("SECRET_%04d", 500+i%10)))
	}
	report(b, times)
}
