package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/testkit"
)

// The history fixture of BenchmarkScanHistory: a deterministic git repository
// (seeded PRNG, fixed dates) written with git fast-import.
const (
	scanMainCommits = 5000 // ordinary commits on main (plus one merge)
	scanFiles       = 300  // source-like text files, 2 modified per commit on average
	scanSecrets     = 100  // managed secrets, 1 current version each
	scanMinHistory  = 200e6
	scanSeed        = 20260101
)

// The large files: rewritten in a few places every 500 commits.
var scanLarge = []struct {
	path  string
	lines int // about 40 bytes each
}{
	{"vendor/bundle.min.js", 100_000},
	{"assets/fixtures.json", 75_000},
	{"docs/api-reference.md", 50_000},
	{"testdata/corpus.txt", 60_000},
}

// Where the managed values are planted: main commit index (or -1: on the
// unmerged branch feature-b) → secret index. Each one is committed in its own
// file and deleted by the next commit, so it is one blob introduced by one
// commit: exactly one finding.
var scanPlants = []struct{ commit, secret int }{
	{900, 7}, {1800, 23}, {2700, 42}, {3600, 61}, {-1, 88},
}

type scanFixture struct {
	dir, key     string // the repository (and rekey project); REKEY_MASTER_KEY
	historyBytes int64  // sum of the sizes of every blob of the object store
	blobs        int
	commits      int
	planted      map[string]bool // names of the planted secrets
	genTime      time.Duration
}

var (
	scanOnce sync.Once
	scanFix  *scanFixture
	scanErr  error
)

// BenchmarkScanHistory times `rekey scan --history --format json` (whole
// process) on a repository of 5,008 commits and over 200 MB of blobs, with
// 100 managed secrets, 5 of which were committed once in the past: "rules"
// as is (managed values and the built-in pattern rules), "no-rules" with
// --no-rules (managed values only). It reports MB/s of history (blob bytes /
// wall seconds), the child's peak RSS (rusage: the most of rekey and the git
// processes it waited for) and rekey's own, and the findings (asserted:
// exactly the planted ones).
func BenchmarkScanHistory(b *testing.B) {
	scanOnce.Do(func() {
		scanFix, scanErr = genScanFixture()
		if scanErr == nil { // the fixture wrote rekey.yaml: approve it, as its operator would
			runIn(b, binary(b), scanFix.dir, append(os.Environ(), "REKEY_MASTER_KEY="+scanFix.key), 0, "config", "trust")
		}
	})
	if scanErr != nil {
		b.Fatal(scanErr)
	}
	b.Run("rules", func(b *testing.B) { benchScan(b, scanFix) })
	b.Run("no-rules", func(b *testing.B) { benchScan(b, scanFix, "--no-rules") })
}

var scanLogged bool

func benchScan(b *testing.B, f *scanFixture, extra ...string) {
	bin := binary(b)
	if !scanLogged { // once: a parent benchmark's log is not printed
		scanLogged = true
		b.Logf("generated %d commits, %d blobs, %.1f MB of history in %v (%s; profile by hand: cd %s && REKEY_MASTER_KEY=$(cat ../master-key) REKEY_CPUPROFILE=/tmp/scan.prof %s scan --history --format json)",
			f.commits, f.blobs, float64(f.historyBytes)/1e6, f.genTime.Round(time.Millisecond), f.dir, f.dir, bin)
	}
	var (
		total    time.Duration
		maxRSS   int64 // rusage: the child and the git processes it waited for
		ownRSS   int64 // the rekey process alone
		findings int
	)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		cmd := exec.Command(bin, append([]string{"scan", "--history", "--report-format", "json"}, extra...)...)
		cmd.Dir = f.dir
		cmd.Env = append(os.Environ(), "REKEY_MASTER_KEY="+f.key)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		t0 := time.Now()
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		own := pollHWM(cmd.Process.Pid)
		err := cmd.Wait()
		total += time.Since(t0)
		ownRSS = max(ownRSS, <-own)
		if ee, ok := err.(*exec.ExitError); err != nil && (!ok || ee.ExitCode() != 1) { // 1: findings, expected
			b.Fatalf("rekey scan --history: %v\n%s", err, stderr.String())
		}
		if err == nil {
			b.Fatalf("rekey scan --history: exit 0, want 1 (findings)\n%s", stderr.String())
		}
		if kib, ok := testkit.PeakRSSKiB(cmd.ProcessState); ok {
			maxRSS = max(maxRSS, kib)
		}
		b.StopTimer()
		findings = checkScanFindings(b, f, stdout.Bytes())
		b.StartTimer()
	}
	b.StopTimer()
	b.ReportMetric(float64(f.historyBytes)*float64(b.N)/1e6/total.Seconds(), "MB/s")
	b.ReportMetric(float64(maxRSS)/1024, "peak-RSS-MiB")
	b.ReportMetric(float64(ownRSS)/1024, "rekey-RSS-MiB")
	b.ReportMetric(float64(f.historyBytes)/1e6, "history-MB")
	b.ReportMetric(float64(f.commits), "commits")
	b.ReportMetric(float64(findings), "findings")
}

// pollHWM samples the VmHWM (peak RSS, KiB) of process pid every 10 ms
// until it exits, then sends the last value read. (The rusage Maxrss of a
// waited-for child is the maximum over it and the children it waited for:
// here, mostly git cat-file --batch.)
func pollHWM(pid int) <-chan int64 {
	ch := make(chan int64, 1)
	go func() {
		var hwm int64
		path := fmt.Sprintf("/proc/%d/status", pid)
		for {
			b, err := os.ReadFile(path)
			_, rest, ok := bytes.Cut(b, []byte("VmHWM:"))
			if err != nil || !ok { // exited (a zombie has no VmHWM)
				break
			}
			line, _, _ := bytes.Cut(rest, []byte("\n"))
			if n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(string(line)), " kB"), 10, 64); err == nil {
				hwm = max(hwm, n)
			}
			time.Sleep(10 * time.Millisecond)
		}
		ch <- hwm
	}()
	return ch
}

// checkScanFindings asserts that the findings are exactly the planted values,
// each found once, and returns their number.
func checkScanFindings(b *testing.B, f *scanFixture, out []byte) int {
	var fs []struct {
		Rule     string `json:"rule"`
		Secret   string `json:"secret"`
		Where    string `json:"where"`
		Commit   string `json:"commit"`
		Path     string `json:"path"`
		Encoding string `json:"encoding"`
	}
	if err := json.Unmarshal(out, &fs); err != nil {
		b.Fatalf("rekey scan --history: bad JSON: %v", err)
	}
	seen := map[string]int{}
	for _, x := range fs {
		if !f.planted[x.Secret] {
			b.Fatalf("unexpected finding: %+v", x)
		}
		seen[x.Secret]++
	}
	for name := range f.planted {
		if seen[name] != 1 {
			b.Fatalf("planted %s found %d times, want 1 (findings: %+v)", name, seen[name], fs)
		}
	}
	if len(fs) != len(f.planted) {
		b.Fatalf("%d findings, want %d", len(fs), len(f.planted))
	}
	return len(fs)
}

func genScanFixture() (*scanFixture, error) {
	t0 := time.Now()
	base, err := os.MkdirTemp("", "rekey-bench-scan-")
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(base, "repo")
	if out, err := exec.Command("git", "init", "-q", "-b", "main", dir).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("git init: %v: %s", err, out)
	}
	r := rand.New(rand.NewPCG(scanSeed, scanSeed>>1))
	// The secrets' values come from the same PRNG: the repository is the same on every run.
	values := make([]string, scanSecrets)
	for i := range values {
		v := make([]byte, 32)
		for j := range v {
			v[j] = byte(r.Uint32())
		}
		values[i] = base64.StdEncoding.EncodeToString(v)
	}
	fi := exec.Command("git", "-C", dir, "fast-import", "--quiet")
	var stderr bytes.Buffer
	fi.Stderr = &stderr
	stdin, err := fi.StdinPipe()
	if err != nil {
		return nil, err
	}
	if err := fi.Start(); err != nil {
		return nil, err
	}
	werr := writeScanHistory(stdin, r, values)
	stdin.Close()
	if err := fi.Wait(); err != nil || werr != nil {
		return nil, fmt.Errorf("git fast-import: %v %v: %s", werr, err, stderr.String())
	}
	if out, err := exec.Command("git", "-C", dir, "reset", "-q", "--hard").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("git reset: %v: %s", err, out)
	}

	// The rekey project: rekey.yaml, the store, and the .env it publishes to (ignored by git).
	fx, err := newFixture(dir)
	if err != nil {
		return nil, err
	}
	err = fx.st.Update(context.Background(), func(tx rekey.Tx) error {
		for i, v := range values {
			name := scanSecretName(i)
			fx.secret(name, v)
			if _, err := tx.AddVersion("production", name, rekey.NewVersion{Value: rekey.NewValueString(v), Label: rekey.LabelCurrent, Source: rekey.SourceGenerated, CreatedAt: time.Now()}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		fx.st.Close()
		return nil, err
	}
	// The master key outside the repository.
	if err := fx.finish(filepath.Join(base, "master-key"), ".gitignore", ".env\n.rekey/\n"); err != nil {
		return nil, err
	}

	f := &scanFixture{dir: dir, key: fx.key.Encode(), planted: map[string]bool{}}
	for _, p := range scanPlants {
		f.planted[scanSecretName(p.secret)] = true
	}
	// History size: every blob of the object store.
	cf := exec.Command("git", "-C", dir, "cat-file", "--batch-all-objects", "--batch-check=%(objecttype) %(objectsize)")
	out, err := cf.Output()
	if err != nil {
		return nil, fmt.Errorf("git cat-file: %v", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		typ, size, ok := strings.Cut(line, " ")
		if ok && typ == "blob" {
			n, err := strconv.ParseInt(size, 10, 64)
			if err != nil {
				return nil, err
			}
			f.historyBytes += n
			f.blobs++
		}
	}
	out, err = exec.Command("git", "-C", dir, "rev-list", "--all", "--count").Output()
	if err != nil {
		return nil, fmt.Errorf("git rev-list: %v", err)
	}
	f.commits, _ = strconv.Atoi(strings.TrimSpace(string(out)))
	if f.historyBytes < scanMinHistory || f.commits < scanMainCommits {
		return nil, fmt.Errorf("fixture too small: %d bytes of blobs, %d commits", f.historyBytes, f.commits)
	}
	f.genTime = time.Since(t0)
	return f, nil
}

func scanSecretName(i int) string { return fmt.Sprintf("SCAN_SECRET_%03d", i) }

// scanWriter writes the fast-import stream: the files' contents are lists of
// indexes into a pool of generated source-like lines.
type scanWriter struct {
	w     *bufio.Writer
	r     *rand.Rand
	pool  [][]byte
	buf   bytes.Buffer
	mark  int
	clock int64
}

var scanWords = strings.Fields(`ctx err value config request handler buffer client server index count name
path result token cache store record entry item list node tree state event queue worker logger metric
option param schema table field key data size offset limit retry timeout session user account policy
version label target source digest header payload stream reader writer parser scanner matcher`)

func (s *scanWriter) word() string { return scanWords[s.r.IntN(len(scanWords))] }

func (s *scanWriter) typ() string {
	w := s.word()
	return strings.ToUpper(w[:1]) + w[1:]
}

func (s *scanWriter) line() []byte {
	ind := strings.Repeat("\t", s.r.IntN(4))
	var l string
	switch s.r.IntN(10) {
	case 0:
		l = fmt.Sprintf("%s := %s.%s(%s, %d)", s.word(), s.word(), s.typ(), s.word(), s.r.IntN(4096))
	case 1:
		l = fmt.Sprintf("if err := %s.%s(ctx, %s); err != nil {", s.word(), s.typ(), s.word())
	case 2:
		l = fmt.Sprintf("return nil, fmt.Errorf(\"%s %s: %%w\", err)", s.word(), s.word())
	case 3:
		l = fmt.Sprintf("// %s the %s of %s before the %s is %s.", s.typ(), s.word(), s.word(), s.word(), s.word())
	case 4:
		l = "}"
	case 5:
		l = fmt.Sprintf("func (%c *%s) %s(%s %s) (%s, error) {", s.word()[0], s.typ(), s.typ(), s.word(), s.typ(), s.typ())
	case 6:
		l = fmt.Sprintf("for i := 0; i < len(%s.%s); i++ {", s.word(), s.word())
	case 7:
		l = fmt.Sprintf("var %s%s = map[string]int{%q: %d, %q: %d}", s.word(), s.typ(), s.word(), s.r.IntN(1000), s.word(), s.r.IntN(1000))
	case 8:
		l = fmt.Sprintf("%s.%s = append(%s.%s, %s{%s: %s})", s.word(), s.word(), s.word(), s.word(), s.typ(), s.typ(), s.word())
	default:
		l = fmt.Sprintf("%s.%s(%q, %s)", s.word(), s.typ(), s.word()+"/"+s.word(), s.word())
	}
	return []byte(ind + l + "\n")
}

func (s *scanWriter) lines(n int) []int32 {
	out := make([]int32, n)
	for i := range out {
		out[i] = int32(s.r.IntN(len(s.pool)))
	}
	return out
}

// edit replaces a few runs of lines of f, keeping its size near target lines.
func (s *scanWriter) edit(f []int32, hunks, target int) []int32 {
	for range hunks {
		p := s.r.IntN(len(f) + 1)
		del := min(s.r.IntN(20), len(f)-p)
		ins := s.r.IntN(20)
		if len(f) > target {
			ins /= 2
		} else if len(f) < target/2 {
			ins *= 2
		}
		f = append(f[:p:p], append(s.lines(ins), f[p+del:]...)...)
	}
	return f
}

func (s *scanWriter) data(b []byte) {
	fmt.Fprintf(s.w, "data %d\n", len(b))
	s.w.Write(b)
	s.w.WriteByte('\n')
}

func (s *scanWriter) file(path string, f []int32) {
	s.buf.Reset()
	for _, i := range f {
		s.buf.Write(s.pool[i])
	}
	fmt.Fprintf(s.w, "M 100644 inline %s\n", path)
	s.data(s.buf.Bytes())
}

var scanAuthors = []string{"Ada Byron <ada@example.com>", "Brian Kernighan <bwk@example.com>", "Grace Hopper <grace@example.com>",
	"Ken Thompson <ken@example.com>", "Barbara Liskov <liskov@example.com>", "Rob Pike <r@example.com>"}

// commit starts a commit on ref (from and merge: marks, 0 for none) and
// returns its mark; the caller writes the file changes.
func (s *scanWriter) commit(ref string, from, merge int, msg string) int {
	s.mark++
	s.clock += 600 + int64(s.r.IntN(7200))
	who := scanAuthors[s.r.IntN(len(scanAuthors))]
	fmt.Fprintf(s.w, "commit %s\nmark :%d\nauthor %s %d +0000\ncommitter %s %d +0000\n", ref, s.mark, who, s.clock, who, s.clock)
	s.data([]byte(msg))
	if from > 0 {
		fmt.Fprintf(s.w, "from :%d\n", from)
	}
	if merge > 0 {
		fmt.Fprintf(s.w, "merge :%d\n", merge)
	}
	return s.mark
}

func (s *scanWriter) plant(value string, secret, n int) string {
	path := fmt.Sprintf("config/local-%d.env", n)
	fmt.Fprintf(s.w, "M 100644 inline %s\n", path)
	s.data([]byte(fmt.Sprintf("# local overrides, do not commit\nLOG_LEVEL=debug\nLISTEN_ADDR=127.0.0.1:%d\n%s=%s\nFEATURE_FLAGS=beta,metrics\n",
		8000+n, scanSecretName(secret), value)))
	return path
}

func writeScanHistory(out io.Writer, r *rand.Rand, values []string) error {
	s := &scanWriter{w: bufio.NewWriterSize(out, 1<<20), r: r, clock: 1577836800}
	for range 20000 {
		s.pool = append(s.pool, s.line())
	}
	dirs := scanWords[:20]
	paths := make([]string, scanFiles)
	files := make([][]int32, scanFiles)
	for i := range files {
		ext := []string{".go", ".go", ".go", ".go", ".py", ".ts", ".md", ".yaml"}[i%8]
		paths[i] = fmt.Sprintf("src/%s/%s_%d%s", dirs[i%len(dirs)], scanWords[(i*7)%len(scanWords)], i, ext)
		files[i] = s.lines(100 + s.r.IntN(700))
	}
	large := make([][]int32, len(scanLarge))
	for i, l := range scanLarge {
		large[i] = s.lines(l.lines)
	}
	plantAt := map[int]int{}
	for n, p := range scanPlants {
		if p.commit >= 0 {
			plantAt[p.commit] = n
		}
	}
	var (
		unplant      string // planted file to delete in the next commit
		forkA, forkB int    // main marks where the side branches start
		tipA         int
		featureA     = map[string][]int32{}
	)
	for c := 0; c < scanMainCommits; c++ {
		var m int
		if c == 3400 { // merge feature-a: its files, and a change of the merge's own
			m = s.commit("refs/heads/main", 0, tipA, "Merge branch 'feature-a'\n")
			for p, f := range featureA {
				s.file(p, f)
			}
		} else {
			m = s.commit("refs/heads/main", 0, 0, fmt.Sprintf("%s: %s the %s %s\n\nChange %d.\n", s.word(), s.word(), s.word(), s.word(), c))
		}
		if c == 0 {
			for i := range files {
				s.file(paths[i], files[i])
			}
			for i, l := range scanLarge {
				s.file(l.path, large[i])
			}
		}
		for range 1 + s.r.IntN(3) {
			i := s.r.IntN(scanFiles)
			files[i] = s.edit(files[i], 1+s.r.IntN(3), 800)
			s.file(paths[i], files[i])
		}
		if c > 0 && c%500 == 0 {
			for i, l := range scanLarge {
				large[i] = s.edit(large[i], 5, l.lines)
				s.file(l.path, large[i])
			}
		}
		if unplant != "" {
			fmt.Fprintf(s.w, "D %s\n", unplant)
			unplant = ""
		}
		if n, ok := plantAt[c]; ok {
			unplant = s.plant(values[scanPlants[n].secret], scanPlants[n].secret, n)
		}
		switch c {
		case 2500:
			fmt.Fprintf(s.w, "\nreset refs/tags/v1.0\nfrom :%d\n", m)
		case 3000:
			forkA = m
		case 3200: // feature-a: 5 commits of new files, from commit 3000
			from := forkA
			for j := range 5 {
				tipA = s.commit("refs/heads/feature-a", from, 0, fmt.Sprintf("feature-a: step %d\n", j))
				from = 0
				p := fmt.Sprintf("src/featurea/flag_%d.go", j)
				featureA[p] = s.lines(200 + s.r.IntN(200))
				s.file(p, featureA[p])
			}
		case 4500:
			forkB = m
		case 4600: // feature-b, unmerged: a planted value, deleted again
			n := len(scanPlants) - 1
			s.commit("refs/heads/feature-b", forkB, 0, "feature-b: local config\n")
			path := s.plant(values[scanPlants[n].secret], scanPlants[n].secret, n)
			s.commit("refs/heads/feature-b", 0, 0, "feature-b: drop local config\n")
			fmt.Fprintf(s.w, "D %s\n", path)
			s.commit("refs/heads/feature-b", 0, 0, "feature-b: tweak\n")
			i := s.r.IntN(scanFiles)
			s.file(paths[i], s.edit(append([]int32(nil), files[i]...), 2, 800))
		}
	}
	return s.w.Flush()
}
