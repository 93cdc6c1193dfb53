package postgres

import (
	"encoding/base64"
	"strings"
	"testing"
)

// Verifiers computed by PostgreSQL 15 (ALTER ROLE ... PASSWORD 'plaintext'
// with password_encryption=scram-sha-256, read back from pg_authid).
var serverVectors = []struct{ pw, verifier string }{
	{"pencil", "SCRAM-SHA-256$4096:xuIALdTX3hVpVd5Hs3vOXA==$SwCntyakahPbRjXzQhtNdFV80AKj1yaJYCgBMTyhEjE=:LKOyW3ERvWin4Fa3XZE4uq0M7t6ag9lSpLZKSMq796U="},
	{"I\u00adX \u2168 caf\u00e9", "SCRAM-SHA-256$4096:VngNJ7doQqVwkh6yXCtdpQ==$YjXdTXJQPPyDb1ulKMrEn2ojD3Bh81J7AGJ5O3+O9TM=:G2bgWub58U3oDVvSa5df5LO1Y+iOPrtbumxxsE7Hwc0="},
	{"a\u200bb", "SCRAM-SHA-256$4096:1ZgGDZzYLwU0lI9XMMmvHA==$oo6Cv88BQrLCcJHq2azWp7h74rGrh2gtAD4seG35hlY=:DIo8ylQbuy9dFyQ3hxP/fuJw1TPuLSv2ArD9AUQfae0="},
}

func saltOf(t *testing.T, v string) []byte {
	t.Helper()
	salt64 := strings.Split(strings.Split(v, "$")[1], ":")[1]
	salt, err := base64.StdEncoding.DecodeString(salt64)
	if err != nil {
		t.Fatal(err)
	}
	return salt
}

func TestSCRAMVerifierKnownVectors(t *testing.T) {
	for _, v := range serverVectors {
		if got := SCRAMVerifier([]byte(v.pw), saltOf(t, v.verifier), 4096); got != v.verifier {
			t.Errorf("%q:\n got %s\nwant %s", v.pw, got, v.verifier)
		}
	}
}

func TestSASLprep(t *testing.T) {
	salt := []byte("0123456789abcdef")
	same := func(a, b string) bool {
		return SCRAMVerifier([]byte(a), salt, 1) == SCRAMVerifier([]byte(b), salt, 1)
	}
	for _, c := range []struct {
		in, want string
	}{
		{"I\u00adX", "IX"},          // mapped to nothing
		{"a\u00a0b", "a b"},         // non-ASCII space
		{"a\u200bb", "a b"},         // in both tables: PostgreSQL maps it to a space
		{"\u2168", "IX"},            // NFKC
		{"\uff21\uff22", "AB"},      // NFKC
		{"cafe\u0301", "caf\u00e9"}, // NFKC composition
	} {
		if !same(c.in, c.want) {
			t.Errorf("%q should be prepared to %q", c.in, c.want)
		}
	}
	// Refused by SASLprep: hashed as raw bytes.
	for _, raw := range []string{
		"\xff\xfeinvalid utf-8",
		"\u05d0abc",         // bidi
		"x\u0221y",          // unassigned in Unicode 3.2
		"a\ue000b",          // private use
		"\u00ad",            // empty after mapping
		"caf\u00e9\u0007\t", // control characters with non-ASCII
	} {
		got, owned := saslPrep([]byte(raw))
		if owned || string(got) != raw {
			t.Errorf("%q: want raw bytes, got %q", raw, got)
		}
	}
	// Pure ASCII is never touched, even control characters.
	if got, owned := saslPrep([]byte("tab\tdel\x7f")); owned || string(got) != "tab\tdel\x7f" {
		t.Errorf("ASCII changed: %q", got)
	}
}

func TestNewSCRAMVerifier(t *testing.T) {
	a, err := NewSCRAMVerifier([]byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewSCRAMVerifier([]byte("secret"))
	if a == b {
		t.Error("two verifiers share a salt")
	}
	if !isSCRAMVerifier(a) || !strings.HasPrefix(a, "SCRAM-SHA-256$4096:") {
		t.Errorf("malformed verifier %s", a)
	}
	if salt := saltOf(t, a); len(salt) != 16 {
		t.Errorf("salt is %d bytes", len(salt))
	}
	if strings.Contains(a, "secret") {
		t.Error("verifier contains the password")
	}
	for _, bad := range []string{"", "md5abc", "SCRAM-SHA-256$x:AA==$AA==:AA==", "SCRAM-SHA-256$4096:AA==$AA==:AA==",
		"SCRAM-SHA-256$4096:AA==$" + strings.Repeat("A", 43) + "=:" + strings.Repeat("A", 43) + "='"} {
		if isSCRAMVerifier(bad) {
			t.Errorf("isSCRAMVerifier(%q) = true", bad)
		}
	}
	if got := SCRAMVerifier([]byte("x"), []byte("salt"), 0); !strings.HasPrefix(got, "SCRAM-SHA-256$4096:") {
		t.Errorf("iterations 0 should mean 4096: %s", got)
	}
}

func TestQuoteIdent(t *testing.T) {
	for in, want := range map[string]string{
		"app":          `"app"`,
		"App User":     `"App User"`,
		`we"ird`:       `"we""ird"`,
		`""`:           `""""""`,
		"robert'); --": `"robert'); --"`,
	} {
		if got := QuoteIdent(in); got != want {
			t.Errorf("QuoteIdent(%q) = %s, want %s", in, got, want)
		}
	}
	if checkRoleName("") == nil || checkRoleName("a\x00b") == nil || checkRoleName(strings.Repeat("r", 64)) == nil {
		t.Error("checkRoleName accepts a bad name")
	}
	if err := checkRoleName(strings.Repeat("r", 63)); err != nil {
		t.Error(err)
	}
}
