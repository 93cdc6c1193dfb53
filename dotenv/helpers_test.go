package dotenv

import (
	"testing"

	"github.com/rekeyhq/rekey/internal/testkit"
)

// Test messages follow the package's rule: they never print a value, only
// keys, lengths and positions.

// valueDiff describes how two values differ without showing either.
func valueDiff(got, want string) string {
	return testkit.BytesDiff([]byte(got), []byte(want))
}

// mapDiff lists the keys whose values differ between got and want.
func mapDiff(got, want map[string]string) []string {
	var keys []string
	for k, w := range want {
		if g, ok := got[k]; !ok {
			keys = append(keys, k+" (missing)")
		} else if g != w {
			keys = append(keys, k+" ("+valueDiff(g, w)+")")
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			keys = append(keys, k+" (unexpected)")
		}
	}
	return keys
}

// values returns every key's value.
func values(f *File) map[string]string {
	m := make(map[string]string)
	for _, k := range f.Keys() {
		v, _ := f.Get(k)
		m[k] = v
	}
	return m
}

func mustParse(t testing.TB, data string) *File {
	t.Helper()
	f, err := Parse("test.env", []byte(data))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return f
}
