package scan

import (
	"bytes"
	"cmp"
	"context"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/rekeyhq/rekey/internal/testkit"
)

// smallWindows makes every input bigger than a few hundred bytes stream in
// windows of chunk bytes (overlapping by at least 256), for the test.
func smallWindows(t *testing.T, chunk int) {
	t.Helper()
	w, c, o := wholeLimit, chunkSize, ruleOverlap
	wholeLimit, chunkSize, ruleOverlap = 0, chunk, 256
	t.Cleanup(func() { wholeLimit, chunkSize, ruleOverlap = w, c, o })
}

func sortedFindings(fs []Finding) []Finding {
	out := append([]Finding(nil), fs...)
	slices.SortStableFunc(out, func(x, y Finding) int {
		return cmp.Or(cmp.Compare(x.Line, y.Line), cmp.Compare(x.Column, y.Column), cmp.Compare(x.Secret, y.Secret),
			cmp.Compare(x.Encoding, y.Encoding), cmp.Compare(x.Rule, y.Rule))
	})
	for i := range out {
		out[i].pending = nil
	}
	return out
}

// streamInput is text of short lines with managed values planted raw, as
// base64 and as hex, rule matches, allow markers, and some long lines
// (longer than a window's overlap) holding managed values.
func streamInput(r *rand.Rand, size int, values []string, rules map[string][2]string) []byte {
	var b bytes.Buffer
	ruleIDs := make([]string, 0, len(rules))
	for id := range rules {
		ruleIDs = append(ruleIDs, id)
	}
	sort.Strings(ruleIDs)
	for b.Len() < size {
		switch k := r.IntN(20); {
		case k < 3:
			v := values[r.IntN(len(values))]
			forms := []string{v, base64.StdEncoding.EncodeToString([]byte(v)), hex.EncodeToString([]byte(v))}
			fmt.Fprintf(&b, "value %s here", forms[r.IntN(len(forms))])
			if r.IntN(4) == 0 {
				b.WriteString(" # rekey:allow")
			}
			b.WriteByte('\n')
		case k < 5:
			b.WriteString(rules[ruleIDs[r.IntN(len(ruleIDs))]][1])
		case k < 6:
			// A long line (no line break for several windows' overlap),
			// with values in it.
			n := 1000 + r.IntN(3000)
			for i := 0; i < n; i += 100 {
				b.WriteString(randString(r, 100, alnum))
				switch r.IntN(10) {
				case 0, 1:
					b.WriteString(values[r.IntN(len(values))])
				case 2: // a rule match, on one line
					if line := rules[ruleIDs[r.IntN(len(ruleIDs))]][1]; strings.Count(line, "\n") == 1 {
						b.WriteString(" " + strings.TrimSuffix(line, "\n") + " ")
					}
				}
			}
			b.WriteByte('\n')
		default:
			b.WriteString(randString(r, r.IntN(80), alnum+" .,;()"))
			b.WriteByte('\n')
		}
	}
	return b.Bytes()
}

// TestWindowsMatchWhole: an input scanned in windows (of several sizes, so
// that values and rule matches straddle many window boundaries) gives
// exactly the findings of the whole input scanned at once: same secrets,
// encodings, rules, lines, columns, previews, allow markers honoured.
func TestWindowsMatchWhole(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 1))
	values := []string{
		"rk_" + randString(r, 29, alnum),
		randString(r, 8, alnum),
		randString(r, 300, alnum), // hex 600 bytes: an overlap longer than the rules'
		"p@ss/w0rd:" + randString(r, 20, alnum),
	}
	var secrets []Secret
	for i, v := range values {
		secrets = append(secrets, secret(fmt.Sprintf("S%d", i), v))
	}
	rules := samples(r)
	for _, withRules := range []bool{false, true} {
		m := NewMatcher(secrets)
		if withRules {
			m.SetRules(DefaultRules())
		}
		for round := 0; round < 4; round++ {
			data := streamInput(r, 200_000, values, rules)
			whole := sortedFindings(m.scanData(data, Finding{Path: "f"}))
			if len(whole) < 100 {
				t.Fatalf("only %d findings planted", len(whole))
			}
			for _, chunk := range []int{1024, 1500, 4096, 10_000} {
				smallWindows(t, chunk)
				var got []Finding
				windows := 0
				err := m.windows(iotestHalf(bytes.NewReader(data)), nil, func(w part) error {
					windows++
					got = append(got, m.scanWindow(w, Finding{Path: "f"})...)
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
				if windows < len(data)/(chunk+3*m.overlap()) {
					t.Fatalf("only %d windows", windows)
				}
				got = sortedFindings(got)
				if !reflect.DeepEqual(got, whole) {
					t.Fatalf("rules %v, chunk %d: windows found %d, the whole input %d; first difference: %s",
						withRules, chunk, len(got), len(whole), firstDiff(got, whole))
				}
			}
		}
	}
}

func firstDiff(a, b []Finding) string {
	for i := 0; i < len(a) && i < len(b); i++ {
		if !reflect.DeepEqual(a[i], b[i]) {
			return fmt.Sprintf("%+v vs %+v", a[i], b[i])
		}
	}
	if len(a) > len(b) {
		return fmt.Sprintf("extra %+v", a[len(b)])
	}
	if len(b) > len(a) {
		return fmt.Sprintf("missing %+v", b[len(a)])
	}
	return ""
}

// iotestHalf reads at most half of what is asked (and never more than 777
// bytes), like a pipe.
type halfReader struct{ r io.Reader }

func iotestHalf(r io.Reader) io.Reader { return halfReader{r} }

func (h halfReader) Read(p []byte) (int, error) {
	return h.r.Read(p[:max(1, min(len(p)/2, 777))])
}

// TestValueStraddlesChunkBoundary: a file of one line (no line break to end
// or start a window at) with a managed value, or a rule match (the
// generic-secret rule's keyword before the value), at every offset around
// the end of the first window's owned range and of the first window is
// found once, at its column; then in the worktree, the index and a history
// blob.
func TestValueStraddlesChunkBoundary(t *testing.T) {
	v := "rk_" + strings.Repeat("Zx9", 10)
	m := NewMatcher([]Secret{secret("S", v)})
	m.SetRules(DefaultRules())
	smallWindows(t, 1024)
	o := m.overlap()
	pw := samples(rand.New(rand.NewPCG(3, 4)))["generic-secret"][0]
	for _, c := range []struct{ text, prefix, what string }{{v, "", "S"}, {"DB_PASSWORD=" + pw + " ", "DB_", "generic-secret"}} { // a rule's column is its match's (from the keyword)
		// The first window is data[:1024+3o] and owns the matches starting
		// in data[:1024+2o].
		for at := 1024 + 2*o - len(c.text) - 2; at < 1024+3*o+2; at++ {
			data := bytes.Repeat([]byte{'.'}, 5000)
			copy(data[at:], c.text)
			fs, err := m.scanReader(bytes.NewReader(data), int64(len(data)), Finding{Path: "f"})
			if err != nil {
				t.Fatal(err)
			}
			if len(fs) != 1 || fs[0].Secret+fs[0].Rule != c.what || fs[0].Line != 1 || fs[0].Column != at+len(c.prefix)+1 {
				t.Fatalf("%s at %d: %+v", c.what, at, fs)
			}
		}
	}

	repo := newRepo(t)
	data := bytes.Repeat([]byte("x\n"), 2500)
	copy(data[1024+3*o-5:], v)
	repo.commit("big", map[string]string{"big.txt": string(data)})
	fs, err := ScanRepo(context.Background(), repo.dir, m, Options{History: true, Staged: true})
	if err != nil {
		t.Fatal(err)
	}
	wantLine := bytes.Count(data[:1024+3*o-5], []byte{'\n'}) + 1
	where := map[string]int{}
	for _, f := range fs {
		if f.Secret != "S" || f.Line != wantLine || f.Column != 1+(1024+3*o-5)-bytes.LastIndexByte(data[:1024+3*o-5], '\n')-1 {
			t.Errorf("unexpected finding %+v (want line %d)", f, wantLine)
		}
		where[f.Where]++
	}
	if where[WhereWorktree] != 1 || where[WhereIndex] != 1 || where[WhereCommit] != 1 {
		t.Fatalf("want one finding each in the worktree, the index and the commit: %+v", fs)
	}
}

// TestScanHeapBounded: scanning a 200 MB sparse file of the worktree and
// the same 200 MB as a blob of the history (with a value near the end)
// raises the heap by less than 100 MiB: nothing holds a whole file or blob.
// (cmd/rekey's TestScanMemoryBounded measures the binary's peak RSS.)
func TestScanHeapBounded(t *testing.T) {
	testkit.Long(t, "scans 400 MB")
	repo := newRepo(t)
	v := "rk_" + strings.Repeat("Qy7", 10)
	p := filepath.Join(repo.dir, "big.bin")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(200 << 20); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte(v), 199<<20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	repo.git("add", "big.bin")
	repo.git("commit", "-q", "-m", "big")
	m := NewMatcher([]Secret{secret("S", v)})
	m.SetRules(DefaultRules())

	// The peak of the heap, sampled while the scan runs.
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	stop, peak := make(chan struct{}), make(chan uint64)
	go func() {
		var hi uint64
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			hi = max(hi, ms.HeapInuse)
			select {
			case <-stop:
				peak <- hi
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	fs, err := ScanRepo(context.Background(), repo.dir, m, Options{History: true})
	close(stop)
	hi := <-peak
	if err != nil {
		t.Fatal(err)
	}
	if len(fs) != 2 {
		t.Fatalf("want the value in the worktree and the commit: %+v", fs)
	}
	grew := (int64(hi) - int64(base.HeapInuse)) >> 20
	t.Logf("heap in use grew by %d MiB during the scan", grew)
	if grew >= 100 {
		t.Fatalf("the heap grew by %d MiB scanning a 200 MB file and blob, want < 100", grew)
	}
}
