package testkit

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// WriteFile writes data to path (its folder created) with mode, or fails
// the test.
func WriteFile(tb testing.TB, path, data string, mode os.FileMode) {
	tb.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), mode); err != nil {
		tb.Fatal(err)
	}
}

// ReadFile returns the content of path, or fails the test.
func ReadFile(tb testing.TB, path string) string {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

// CopyFile copies from to to (mode 0600), or fails the test.
func CopyFile(tb testing.TB, from, to string) {
	tb.Helper()
	WriteFile(tb, to, ReadFile(tb, from), 0o600)
}

// EditFile replaces the first old in the file at path by new (appends new
// when old is ""), keeping mode 0644, or fails the test when old is not
// there. It returns the new content.
func EditFile(tb testing.TB, path, old, new string) string {
	tb.Helper()
	text := ReadFile(tb, path)
	next := text + new
	if old != "" {
		if next = strings.Replace(text, old, new, 1); next == text {
			tb.Fatalf("no %q in %s:\n%s", old, filepath.Base(path), text)
		}
	}
	WriteFile(tb, path, next, 0o644)
	return next
}

// Golden compares got with the file testdata/name, or writes it there when
// update is set (a test's -update flag). diff describes a difference
// (BytesDiff where the test must not print what it compares).
func Golden(tb testing.TB, name string, got []byte, update bool, diff func(got, want []byte) string) {
	tb.Helper()
	path := filepath.Join("testdata", name)
	if update {
		WriteFile(tb, path, string(got), 0o644)
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		tb.Fatalf("%v (run go test -update to create it)", err)
	}
	if string(got) != string(want) {
		tb.Errorf("%s: %s (inspect with go test -update && git diff)", name, diff(got, want))
	}
}

// BytesDiff says where got and want differ without showing either.
func BytesDiff(got, want []byte) string {
	i := 0
	for i < min(len(got), len(want)) && got[i] == want[i] {
		i++
	}
	line := 1 + strings.Count(string(want[:i]), "\n")
	return fmt.Sprintf("first difference at byte %d (line %d); got %d bytes, want %d", i, line, len(got), len(want))
}
