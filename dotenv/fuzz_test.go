package dotenv

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/rekeyhq/rekey/internal/testkit"
)

// Failure messages here never print the input; go test saves a failing
// input under testdata/fuzz/ for inspection.

func fuzzSeeds(f *testing.F) [][]byte {
	seeds := [][]byte{
		nil,
		[]byte("A=1\n"),
		[]byte("\uFEFF# c\r\nexport A = 'x' # c\r\nB=\"m\nl\"\nC=y #z"),
		[]byte("A=\"a\\\"b\\\\\" #c\nB='\\'\nC= #x\nD=#x\n"),
		[]byte("A=1\r\nB=2\nC='a\r\nb'\r\n\t\n  # x\n"),
		[]byte("export=1\nexport B=2\nA.b=3\n_=4"),
		[]byte("A='x'#c\nB=\"y\"\t# c # d\n"),
		[]byte("A=x\rB=y\n"),
		[]byte("A=1\nA=2\n"),
		[]byte("A='unterminated\n"),
		[]byte("not a binding\n"),
	}
	if b, err := os.ReadFile(filepath.Join("testdata", "tricky.env")); err == nil {
		seeds = append(seeds, b)
	} else {
		f.Fatal(err)
	}
	return seeds
}

// FuzzRoundTrip checks that Parse never panics, that any input it accepts
// comes back byte for byte from Bytes(), and that refusals are
// *ParseErrors with a line inside the input.
func FuzzRoundTrip(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		in := bytes.Clone(data)
		file, err := Parse("fuzz.env", data)
		if !bytes.Equal(in, data) {
			t.Fatal("Parse modified its input")
		}
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error is %T, want *ParseError", err)
			}
			if lines := 1 + bytes.Count(data, []byte("\n")); pe.Line < 1 || pe.Line > lines {
				t.Fatalf("error on line %d of %d", pe.Line, lines)
			}
			if pe.File != "fuzz.env" || pe.Hint == "" {
				t.Fatal("error without file name or hint")
			}
			return
		}
		if got := file.Bytes(); !bytes.Equal(got, data) {
			t.Fatalf("round trip: %s", testkit.BytesDiff(got, data))
		}
		seen := map[string]bool{}
		for _, k := range file.Keys() {
			if seen[k] || !validKey(k) {
				t.Fatalf("Keys() has duplicate or invalid key %q", k)
			}
			seen[k] = true
			if _, ok := file.Get(k); !ok {
				t.Fatalf("Get(%s) not ok", k)
			}
			if l := file.Line(k); l < 1 {
				t.Fatalf("Line(%s) = %d", k, l)
			}
		}
	})
}

// FuzzSet checks that after a successful Set(k, v) the result parses, reads
// back v for k and the old value for every other key, and that every other
// line keeps its bytes; a refused Set leaves the file unchanged. It then
// deletes k and checks the same for the remaining keys.
func FuzzSet(f *testing.F) {
	keys := []string{"A", "B", "C", "NEW", "export", "API_KEY", "MULTI", "LAST", "1bad"}
	vals := []string{"", "v", "a b", "a#b", "#", "$HOME", "${HOME}", "it's", "a\\b", "a\\", "x\ny", "q8+Vx/3k==", "ü", " lead", "`", `"`}
	for i, s := range fuzzSeeds(f) {
		f.Add(s, keys[i%len(keys)], vals[i%len(vals)])
		f.Add(s, keys[(i+3)%len(keys)], vals[(i+5)%len(vals)])
	}
	f.Fuzz(func(t *testing.T, data []byte, key, value string) {
		file, err := Parse("fuzz.env", data)
		if err != nil {
			return
		}
		before := values(file)
		oldKeys := file.Keys()
		oldEntries := slices.Clone(file.entries)
		oldRaw := make([][]byte, len(oldEntries))
		for i, e := range oldEntries {
			oldRaw[i] = e.raw
		}
		_, existed := before[key]

		if err := file.Set(key, value); err != nil {
			if !bytes.Equal(file.Bytes(), data) {
				t.Fatal("refused Set changed the file")
			}
			if validKey(key) && !errors.Is(err, ErrNotPortable) {
				t.Fatalf("Set refused a valid key without ErrNotPortable: %v", err)
			}
			// The error may name the key, so only a value that is not part
			// of the key must be absent.
			if len(value) >= 4 && !strings.Contains(key, value) && strings.Contains(err.Error(), value) {
				t.Fatal("error contains the value")
			}
			return
		}
		if !validKey(key) {
			t.Fatal("Set accepted an invalid key")
		}
		out := file.Bytes()
		g, err := Parse("fuzz.env", out)
		if err != nil {
			t.Fatalf("re-parse after Set(%s): %v", key, err)
		}
		if got, _ := g.Get(key); got != value {
			t.Fatalf("Get(%s) after re-parse: %s", key, valueDiff(got, value))
		}
		want := before
		want[key] = value
		if d := mapDiff(values(g), want); d != nil {
			t.Fatalf("values after Set(%s) differ: %v", key, d)
		}
		wantKeys := oldKeys
		if !existed {
			wantKeys = append(wantKeys, key)
		}
		if !slices.Equal(g.Keys(), wantKeys) {
			t.Fatalf("keys after Set(%s) = %v, want %v", key, g.Keys(), wantKeys)
		}
		// Every other entry keeps its bytes; only when appending may the
		// old last line gain a line ending.
		for i, e := range oldEntries {
			if e.key == key {
				continue
			}
			raw := file.entries[i].raw
			if bytes.Equal(raw, oldRaw[i]) {
				continue
			}
			if !existed && i == len(oldEntries)-1 && bytes.HasPrefix(raw, oldRaw[i]) {
				if rest := string(raw[len(oldRaw[i]):]); rest == "\n" || rest == "\r\n" {
					continue
				}
			}
			t.Fatalf("line(s) of entry %d changed by Set(%s)", i, key)
		}
		if bytes.HasPrefix(data, []byte(bom)) != bytes.HasPrefix(out, []byte(bom)) {
			t.Fatal("byte order mark added or lost")
		}

		// Delete the key again.
		if !g.Delete(key) {
			t.Fatalf("Delete(%s) = false", key)
		}
		h, err := Parse("fuzz.env", g.Bytes())
		if err != nil {
			t.Fatalf("re-parse after Delete(%s): %v", key, err)
		}
		delete(want, key)
		if d := mapDiff(values(h), want); d != nil {
			t.Fatalf("values after Delete(%s) differ: %v", key, d)
		}
	})
}
