package main

import (
	"slices"
	"testing"
)

// TestRunEnviron: a variable already set wins over a .env key, a managed
// value replaces a variable of its name (once), and no key material passes,
// whichever list it comes from.
func TestRunEnviron(t *testing.T) {
	environ := []string{"PATH=/bin", "PORT=9000", "JWT_SECRET=from-the-shell", "REKEY_MASTER_KEY=k1"}
	plain := []string{"PORT=8080", "RUST_LOG=info", "REKEY_PASSPHRASE=p1"}
	got := runEnviron(environ, plain, func(add func(string, []byte)) {
		add("JWT_SECRET", []byte("from-the-store"))
		add("REKEY_NEW_TOKEN", []byte("k2"))
	})
	want := []string{"PATH=/bin", "PORT=9000", "RUST_LOG=info", "JWT_SECRET=from-the-store"}
	if !slices.Equal(got, want) {
		t.Errorf("runEnviron = %q, want %q", got, want)
	}
}
