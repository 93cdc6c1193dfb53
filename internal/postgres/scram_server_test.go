package postgres_test

import (
	"strings"
	"testing"

	"github.com/rekeyhq/rekey/internal/postgres"
	"github.com/rekeyhq/rekey/internal/testkit"
)

// scramVectors exercise SASLprep: pure ASCII (untouched), mapping,
// normalization, and the inputs SASLprep refuses (hashed raw, as the
// server does).
var scramVectors = []struct{ name, pw string }{
	{"ascii", "correct horse battery staple"},
	{"ascii-special", `p@ss:w/rd?#%'"\ $x`},
	{"ascii-control", "tab\there\x7fdel"},
	{"soft-hyphen-mapped-to-nothing", "I\u00adX"},
	{"nbsp-mapped-to-space", "a\u00a0b"},
	{"zero-width-space", "a\u200bb"},
	{"nfkc-roman-numeral", "\u2168"},
	{"nfkc-fullwidth", "\uff21\uff22\uff23"},
	{"precomposed", "caf\u00e9"},
	{"combining", "cafe\u0301"},
	{"ligature", "\ufb01x"},
	{"rtl", "\u05d0\u05d1\u05d2"},
	{"bidi-violation", "\u05d0abc"},
	{"unassigned-in-unicode-3.2", "x\u0221y"},
	{"emoji", "pass\U0001F600word"},
	{"private-use", "a\ue000b"},
	{"only-mapped-to-nothing", "\u00ad\u00ad"},
	{"long-non-ascii", strings.Repeat("\u00e9", 1100)},
}

// TestSCRAMVerifierMatchesServer lets the server hash plaintext passwords
// (password_encryption=scram-sha-256), then recomputes each verifier with
// the server's salt and iteration count: it must match byte for byte.
func TestSCRAMVerifierMatchesServer(t *testing.T) {
	admin := superConn(t)
	// The plaintext of these test vectors must not reach the log either.
	mustExec(t, admin, "SET log_statement = 'none'")
	mustExec(t, admin, "SET password_encryption = 'scram-sha-256'")
	role := testkit.Unique("scram_vector")
	mustExec(t, admin, "CREATE ROLE "+postgres.QuoteIdent(role))
	for _, v := range scramVectors {
		t.Run(v.name, func(t *testing.T) {
			lit := "'" + strings.ReplaceAll(v.pw, "'", "''") + "'"
			if _, err := admin.Exec(testCtx(t), "ALTER ROLE "+postgres.QuoteIdent(role)+" PASSWORD "+lit); err != nil {
				t.Fatal(err)
			}
			server := storedVerifier(t, admin, role)
			iter, salt := parseVerifier(t, server)
			if got := postgres.SCRAMVerifier([]byte(v.pw), salt, iter); got != server {
				t.Errorf("verifier differs from the server's\n got %s\nwant %s", got, server)
			}
		})
	}
}

// TestSetPasswordStoresOurVerifier checks what SetPassword sends is stored
// as is: 16-byte salt, 4096 iterations, and the keys of our computation.
func TestSetPasswordStoresOurVerifier(t *testing.T) {
	pw := []byte("Stored-Verifier-\u00e9-1")
	admin, role := newLoginRole(t, "stored", pw)
	stored := storedVerifier(t, admin, role)
	iter, salt := parseVerifier(t, stored)
	if iter != 4096 || len(salt) != 16 {
		t.Fatalf("iterations %d, salt %d bytes; want 4096 and 16", iter, len(salt))
	}
	if got := postgres.SCRAMVerifier(pw, salt, iter); got != stored {
		t.Fatalf("stored verifier is not ours")
	}
	// A verifier logs in: the whole SCRAM exchange works with it.
	login(t, role, pw)
}
