package scan

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/url"
	"strings"
	"testing"

	"github.com/rekeyhq/rekey"
)

const alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

func randString(r *rand.Rand, n int, alphabet string) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[r.IntN(len(alphabet))]
	}
	return string(b)
}

func randBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func secret(name, v string) Secret {
	return Secret{Env: "prod", Name: name, Version: 1, Current: true, Fingerprint: "fp-" + name, Value: rekey.NewValueString(v)}
}

// randomSecrets returns n secrets S0, S1... of random rk_ values.
func randomSecrets(r *rand.Rand, n int) []Secret {
	var out []Secret
	for i := 0; i < n; i++ {
		out = append(out, secret(fmt.Sprintf("S%d", i), "rk_"+randString(r, 29, alnum)))
	}
	return out
}

func hasMatch(ms []Match, si int, enc string) bool {
	for _, m := range ms {
		if m.SecretIndex == si && m.Encoding == enc {
			return true
		}
	}
	return false
}

// TestMatcherEncodings plants every form of several values (ASCII token,
// token with URL/JSON-special characters, binary bytes) inside text and
// expects a match of the right encoding.
func TestMatcherEncodings(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	values := map[string]string{
		"token":   "rk_" + randString(r, 29, alnum),
		"special": `p@ss/w0rd:"q"?&=+ <é>#` + randString(r, 12, alnum),
		"binary":  string(randBytes(r, 24)),
		"slashy":  string(bytes.Repeat([]byte{0xfb, 0xff, 0xbf}, 8)), // + and / (- and _) in every alignment
	}
	for name, v := range values {
		m := NewMatcher([]Secret{secret("OTHER", "unrelated-"+randString(r, 20, alnum)), secret(name, v)})
		type tc struct {
			name, enc string
			data      string
		}
		var cases []tc
		wrap := func(s string) string { return "before " + randString(r, 7, alnum) + " " + s + " after\n" }
		cases = append(cases,
			tc{"raw", EncRaw, wrap(v)},
			tc{"hex-lower", EncHex, wrap(hex.EncodeToString([]byte(v)))},
			tc{"hex-upper", EncHex, wrap(strings.ToUpper(hex.EncodeToString([]byte(v))))},
		)
		for p := 0; p < 3; p++ {
			for s := 0; s < 3; s++ {
				in := append(append(randBytes(r, p), v...), randBytes(r, s)...)
				std := base64.StdEncoding.EncodeToString(in)
				cases = append(cases, tc{fmt.Sprintf("base64-align%d-suffix%d", p, s), EncBase64, wrap(std)})
				urlEnc := EncBase64URL
				if base64Fragment(base64.URLEncoding, []byte(v), p) != nil &&
					bytes.Equal(base64Fragment(base64.URLEncoding, []byte(v), p), base64Fragment(base64.StdEncoding, []byte(v), p)) {
					urlEnc = EncBase64 // identical pattern: reported once, as base64
				}
				cases = append(cases, tc{fmt.Sprintf("base64url-align%d-suffix%d", p, s), urlEnc, wrap(base64.RawURLEncoding.EncodeToString(in))})
			}
			// Inside a longer base64 blob (prefix data of p mod 3 bytes plus whole groups).
			long := append(append(randBytes(r, 30+p), v...), randBytes(r, 40)...)
			cases = append(cases, tc{fmt.Sprintf("base64-long-align%d", p), EncBase64, wrap(base64.StdEncoding.EncodeToString(long))})
		}
		if q := url.QueryEscape(v); q != v {
			cases = append(cases, tc{"url-query", EncURL, wrap("https://x.test/?k=" + q + "&z=1")})
		}
		if pe := url.PathEscape(v); pe != v {
			cases = append(cases, tc{"url-path", EncURL, wrap("https://x.test/a/" + pe + "/b")})
		}
		if u := (&url.URL{Scheme: "postgres", User: url.UserPassword("app", v), Host: "db:5432", Path: "/app"}).String(); !strings.Contains(u, v) {
			cases = append(cases, tc{"url-userinfo", EncURL, wrap("DATABASE_URL=" + u)})
		}
		if b, _ := json.Marshal(map[string]string{"k": v}); !bytes.Contains(b, []byte(v)) && name != "binary" && name != "slashy" {
			cases = append(cases, tc{"json", EncJSON, wrap(string(b))})
			var buf bytes.Buffer
			enc := json.NewEncoder(&buf)
			enc.SetEscapeHTML(false)
			_ = enc.Encode(v)
			cases = append(cases, tc{"json-nohtml", EncJSON, wrap(`{"k":` + buf.String() + `}`)})
			cases = append(cases, tc{"json-escaped-slash", EncJSON, wrap(strings.ReplaceAll(buf.String(), "/", `\/`))})
		}
		for _, c := range cases {
			t.Run(name+"/"+c.name, func(t *testing.T) {
				ms := m.Scan([]byte(c.data))
				if !hasMatch(ms, 1, c.enc) {
					t.Fatalf("no %s match of secret %s; got %d matches %+v", c.enc, name, len(ms), ms)
				}
				for _, mt := range ms {
					if mt.SecretIndex == 0 {
						t.Fatalf("unrelated secret matched")
					}
					if mt.Offset < 0 || mt.Offset+mt.Len > len(c.data) {
						t.Fatalf("match out of range")
					}
				}
			})
		}
	}
}

func TestMatcherBase64FragmentStable(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	v := randBytes(r, 33)
	for p := 0; p < 3; p++ {
		frag := base64Fragment(base64.StdEncoding, v, p)
		for trial := 0; trial < 50; trial++ {
			in := append(append(randBytes(r, p+3*r.IntN(4)), v...), randBytes(r, r.IntN(5))...)
			if !strings.Contains(base64.StdEncoding.EncodeToString(in), string(frag)) {
				t.Fatalf("alignment %d: fragment not stable", p)
			}
		}
	}
}

func TestMatcherNoFalsePositives(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	secrets := randomSecrets(r, 50)
	m := NewMatcher(secrets)
	// Similar-looking text: same prefix, same alphabet, same lengths, encodings of other values.
	var buf bytes.Buffer
	for buf.Len() < 4<<20 {
		other := "rk_" + randString(r, 29, alnum)
		fmt.Fprintf(&buf, "KEY=%s %s %s %s\n", other, base64.StdEncoding.EncodeToString([]byte(other)),
			hex.EncodeToString([]byte(other)), url.QueryEscape(other))
	}
	if ms := m.Scan(buf.Bytes()); len(ms) != 0 {
		t.Fatalf("%d false positives", len(ms))
	}
}

func TestMatcherShortValuesSkipped(t *testing.T) {
	m := NewMatcher([]Secret{secret("SHORT", "abc123"), secret("EMPTY", ""), secret("OK", "abcdefgh")})
	if got := m.Skipped(); len(got) != 2 || got[0] != 0 || got[1] != 1 {
		t.Fatalf("Skipped = %v", got)
	}
	ms := m.Scan([]byte("abc123 abcdefgh"))
	if len(ms) != 1 || ms[0].SecretIndex != 2 || ms[0].Offset != 7 {
		t.Fatalf("matches = %+v", ms)
	}
}

func TestMatcherSharedValueAndOverlaps(t *testing.T) {
	v := "rk_sharedvalue0123456789"
	m := NewMatcher([]Secret{secret("A", v), secret("B", v), secret("C", v+"XYZ")})
	ms := m.Scan([]byte("x=" + v + "XYZ\n" + v))
	// First occurrence: A, B and C (C is longer); second: A and B.
	want := []Match{{0, EncRaw, 2, len(v)}, {1, EncRaw, 2, len(v)}, {2, EncRaw, 2, len(v) + 3}, {0, EncRaw, len(v) + 6, len(v)}, {1, EncRaw, len(v) + 6, len(v)}}
	if fmt.Sprint(ms) != fmt.Sprint(want) {
		t.Fatalf("got %v\nwant %v", ms, want)
	}
	// Boundaries: at the very start and end of data.
	if ms := m.Scan([]byte(v)); len(ms) != 2 {
		t.Fatalf("whole-data match: %v", ms)
	}
}

func TestRedactAndPositions(t *testing.T) {
	if got := redact([]byte("c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0")); got != "c2Vj…(32 chars)" {
		t.Fatalf("redact = %q", got)
	}
	if got := redact([]byte("abcdefghij")); got != "a…(10 chars)" {
		t.Fatalf("redact short = %q", got)
	}
	data := []byte("l1\nline2 SECRET\n\nx SECRET")
	if _, _, el, ec := positions(data, []Match{{Offset: 9, Len: 10}}); el[0] != 4 || ec[0] != 2 {
		t.Fatalf("a match across lines ends at %d:%d", el[0], ec[0])
	}
	lines, cols, endLines, endCols := positions(data, []Match{{Offset: 9, Len: 6}, {Offset: 19, Len: 6}, {Offset: 19, Len: 1}})
	if lines[0] != 2 || cols[0] != 7 || lines[1] != 4 || cols[1] != 3 {
		t.Fatalf("positions = %v %v", lines, cols)
	}
	// The last byte: "SECRET" ends at column 12 of line 2, at column 8 of line 4.
	if endLines[0] != 2 || endCols[0] != 12 || endLines[1] != 4 || endCols[1] != 8 || endLines[2] != 4 || endCols[2] != 3 {
		t.Fatalf("end positions = %v %v", endLines, endCols)
	}
}

// benchText is ~n bytes of random-ish source-like text with a few planted secrets.
func benchText(r *rand.Rand, n int, secrets []Secret) []byte {
	words := []string{"func", "return", "if", "err", "!=", "nil", "{", "}", "config", "value", "=", ":=", "\n", "\t",
		"import", "package", "string", "int", "// comment", "TODO", "http://example.com/path?x=1"}
	var buf bytes.Buffer
	buf.Grow(n + 1024)
	for buf.Len() < n {
		switch r.IntN(20) {
		case 0:
			buf.WriteString(randString(r, 40, alnum+"+/"))
		case 1:
			buf.WriteString(hex.EncodeToString(randBytes(r, 20)))
		default:
			buf.WriteString(words[r.IntN(len(words))])
		}
		buf.WriteByte(' ')
		if r.IntN(200000) == 0 {
			buf.Write(secrets[r.IntN(len(secrets))].Value.Reveal())
		}
	}
	return buf.Bytes()[:n]
}

func BenchmarkMatcher(b *testing.B) {
	r := rand.New(rand.NewPCG(7, 8))
	var secrets []Secret
	for i := 0; i < 100; i++ {
		secrets = append(secrets, secret(fmt.Sprintf("S%d", i), randString(r, 32, alnum+"/+-_@:")))
	}
	m := NewMatcher(secrets)
	data := benchText(r, 64<<20, secrets)
	b.Logf("%d patterns", m.Patterns())
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for b.Loop() {
		_ = m.Scan(data)
	}
}
