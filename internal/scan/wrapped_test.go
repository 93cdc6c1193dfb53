package scan

import (
	"encoding/base64"
	"math/rand/v2"
	"strings"
	"testing"
)

// wrap cuts s into lines of n characters, each after indent.
func wrap(s string, n int, indent string) string {
	var b strings.Builder
	for len(s) > n {
		b.WriteString(indent + s[:n] + "\n")
		s = s[n:]
	}
	b.WriteString(indent + s + "\n")
	return b.String()
}

// TestWrappedValues: a managed value split across lines (PEM and MIME
// widths, CRLF, indentation, the first piece after a key) is found, at its
// first character, with the "-wrapped" encoding; its base64 form wrapped
// too; a PEM key written with another wrapping and indentation; and a value
// whose lines do not continue each other is not.
func TestWrappedValues(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	v := randString(r, 120, alnum+"+/")
	pemBody := base64.StdEncoding.EncodeToString([]byte(randString(r, 300, alnum)))
	pem := "-----BEGIN PRIVATE KEY-----\n" + wrap(pemBody, 64, "") + "-----END PRIVATE KEY-----\n"
	m := NewMatcher([]Secret{secret("V", v), secret("PEM", pem)})
	b64 := base64.StdEncoding.EncodeToString([]byte("prefix" + v))
	cases := []struct {
		name, text, secret, enc string
		line, col               int
	}{
		{"pem width", "x\n" + wrap(v, 64, ""), "V", "raw-wrapped", 2, 1},
		{"mime width, crlf", "x\r\n" + strings.ReplaceAll(wrap(v, 76, ""), "\n", "\r\n"), "V", "raw-wrapped", 2, 1},
		{"yaml folded", "key: |\n" + wrap(v, 40, "    "), "V", "raw-wrapped", 2, 5},
		{"after a name", "TOKEN=" + v[:70] + "\n  " + v[70:] + "\n", "V", "raw-wrapped", 1, 7},
		{"base64 wrapped", "Content-Transfer-Encoding: base64\n\n" + wrap(b64, 76, ""), "V", "base64-wrapped", 3, 9},
		{"pem rewrapped", "tls:\n  key: |\n    -----BEGIN PRIVATE KEY-----\n" + wrap(pemBody, 76, "    ") + "    -----END PRIVATE KEY-----\n", "PEM", "raw-wrapped", 4, 5},
		{"pem as is", "k: " + pem, "PEM", "raw", 1, 4},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fs := m.scanData([]byte(c.text), Finding{Path: "f"})
			if len(fs) != 1 || fs[0].Secret != c.secret || fs[0].Encoding != c.enc || fs[0].Line != c.line || fs[0].Column != c.col {
				t.Fatalf("want %s as %s at %d:%d, got %+v", c.secret, c.enc, c.line, c.col, fs)
			}
			assertNoValue(t, fs, m.Secrets())
		})
	}
	// Broken by a character outside the alphabet, or by a blank line: not one value.
	for _, text := range []string{v[:60] + ".\n" + v[60:] + "\n", v[:60] + "\n\n" + v[60:] + "\n"} {
		if fs := m.scanData([]byte(text), Finding{}); len(fs) != 0 {
			t.Fatalf("found in %q: %+v", text, fs)
		}
	}
}

// BenchmarkWrappedCost compares the exact search alone with Scan (exact and
// wrapped) on source-like text: lines of 10 to 100 bytes, a tenth of them
// ending in a long identifier or a base64 literal, some indented, and a few
// 76-column base64 blocks. Run both in one process (the ratio is what
// counts): go test ./internal/scan -run '^$' -bench WrappedCost.
func BenchmarkWrappedCost(b *testing.B) {
	r := rand.New(rand.NewPCG(9, 10))
	var secrets []Secret
	for i := range 100 {
		secrets = append(secrets, secret("S"+string(rune('A'+i%26))+randString(r, 4, alnum), randString(r, 32, alnum+"/+-_@:")))
	}
	m := NewMatcher(secrets)
	var sb strings.Builder
	for sb.Len() < 32<<20 {
		switch k := r.IntN(1000); {
		case k < 2: // a MIME block
			sb.WriteString(wrap(base64.StdEncoding.EncodeToString([]byte(randString(r, 3000, alnum))), 76, ""))
		case k < 100:
			sb.WriteString(strings.Repeat(" ", r.IntN(8)) + "value = " + randString(r, 10+r.IntN(60), alnum+"_") + "\n")
		default:
			n := 10 + r.IntN(90)
			line := []byte(randString(r, n, alnum+"     (){};,."))
			sb.WriteString(strings.Repeat("\t", r.IntN(3)) + string(line) + ";\n")
		}
	}
	data := []byte(sb.String())
	b.Run("exact", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			_ = m.scanExact(data)
		}
	})
	b.Run("exact+wrapped", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			_ = m.Scan(data)
		}
	})
}
