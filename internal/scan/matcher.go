// Package scan finds the exact values rekey manages (every version of every
// secret, current and retired) wherever they leaked: in a directory tree, a
// git index, and a git repository's whole object store (history, other
// branches, merges, stashes, and unreachable blobs left by history rewrites).
//
// # Secret hygiene
//
// Plaintext values and their encoded forms live only in the memory of a
// [Matcher]. Nothing this package returns, prints, logs or wraps in an error
// holds a value or one of its encoded forms: a [Finding] carries the secret's
// name, version and fingerprint, and a [Finding.Redacted] preview of at most
// 4 leading characters of the matched text (fewer for short values).
package scan

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"net/url"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/rekeyhq/rekey"
)

// MinValueLen is the shortest value the Matcher looks for. Shorter values
// (which rekey never generates) would match by chance in ordinary text; they
// are skipped and listed by [Matcher.Skipped].
const MinValueLen = 8

// window is the number of leading bytes of every pattern that the prefilter
// hashes. Every pattern is at least this long (see MinValueLen: the shortest
// derived form, a base64 fragment of an 8-byte value, has 10 characters).
const window = 8

// The encodings a value is recognised in.
const (
	EncRaw       = "raw"       // the bytes as they are
	EncBase64    = "base64"    // standard alphabet, at any of the 3 byte alignments
	EncBase64URL = "base64url" // URL-safe alphabet, at any of the 3 byte alignments
	EncHex       = "hex"       // lower or upper case
	EncURL       = "url"       // percent-encoded (query, path or userinfo escaping)
	EncJSON      = "json"      // JSON string escaping
)

// Secret is one version of one managed secret. Value is only held in memory.
type Secret struct {
	Env         string
	Name        string
	Version     int
	Current     bool
	Fingerprint string
	Value       rekey.Value
}

// Match is one occurrence of a secret's form in scanned data.
type Match struct {
	SecretIndex int    // index into the []Secret given to NewMatcher
	Encoding    string // one of the Enc* constants
	Offset, Len int    // byte range of the matched text in the scanned data
}

type owner struct {
	secret int
	enc    string
}

type pattern struct {
	b      []byte
	owners []owner
}

// Matcher finds every form of a fixed set of secrets in byte slices. It is
// built once by NewMatcher and is safe for concurrent use by Scan.
//
// Method: every pattern is at least 8 bytes long, so each position of the
// input is tested by hashing its next 8 bytes (one unaligned load and a
// multiply) into a 2^18-bit filter; only positions whose hash is set (the
// true starts plus ~0.5% false positives for 1,000 patterns) look the 8 bytes
// up in a map and compare the candidate patterns in full. The cost is one
// load, multiply, shift and bit test per input byte, independent of the
// number of patterns.
type Matcher struct {
	secrets  []Secret
	patterns []pattern
	filter   []uint64           // bitmap indexed by hash of the first 8 bytes
	byPrefix map[uint64][]int32 // first 8 bytes (little-endian) → pattern indexes
	skipped  []int
	rules    *RuleSet // see SetRules
}

const (
	filterBits = 18
	hashMul    = 0x9E3779B97F4A7C15
)

func hash8(x uint64) uint64 { return (x * hashMul) >> (64 - filterBits) }

// NewMatcher builds the patterns of every secret: the raw value; its standard
// and URL-safe base64 encodings at each of the 3 byte alignments (the stable
// middle of the encoding, so the value is found inside a longer base64
// string); lower- and upper-case hex; its URL escapings (query, path and
// userinfo, when they differ from raw); and its JSON escapings (when they
// differ from raw). Identical patterns are shared (a value kept in several
// versions or environments reports one Match per secret). Secrets whose value
// is shorter than MinValueLen are skipped.
func NewMatcher(secrets []Secret) *Matcher {
	m := &Matcher{
		secrets:  secrets,
		filter:   make([]uint64, 1<<filterBits/64),
		byPrefix: make(map[uint64][]int32),
	}
	index := make(map[string]int) // pattern text → index in m.patterns
	for si, s := range secrets {
		v := s.Value.Reveal()
		if len(v) < MinValueLen {
			m.skipped = append(m.skipped, si)
			continue
		}
		seen := make(map[string]bool) // one owner per (secret, pattern)
		for _, f := range forms(v) {
			if len(f.b) < window {
				continue
			}
			key := string(f.b)
			if seen[key] {
				continue
			}
			seen[key] = true
			pi, ok := index[key]
			if !ok {
				pi = len(m.patterns)
				index[key] = pi
				m.patterns = append(m.patterns, pattern{b: f.b})
				x := binary.LittleEndian.Uint64(f.b)
				h := hash8(x)
				m.filter[h>>6] |= 1 << (h & 63)
				m.byPrefix[x] = append(m.byPrefix[x], int32(pi))
			}
			m.patterns[pi].owners = append(m.patterns[pi].owners, owner{si, f.enc})
		}
	}
	return m
}

// Skipped lists the indexes of the secrets too short to be matched.
func (m *Matcher) Skipped() []int { return m.skipped }

// Secrets returns the secrets the matcher was built from.
func (m *Matcher) Secrets() []Secret { return m.secrets }

// Patterns is the number of distinct patterns searched for.
func (m *Matcher) Patterns() int { return len(m.patterns) }

// Wipe zeroes the matcher's copies of the encoded forms. It does not wipe
// the Values of the secrets it was given (their owner does). The matcher
// must not be used afterwards.
func (m *Matcher) Wipe() {
	for _, p := range m.patterns {
		clear(p.b)
	}
	m.patterns = nil
	m.byPrefix = nil
}

// Scan returns every match in data, ordered by offset, then secret index:
// exact ones, and those across the lines of a wrapped value (see
// scanWrapped). A match contained in a longer match of the same secret is
// dropped.
func (m *Matcher) Scan(data []byte) []Match {
	if len(m.patterns) == 0 || len(data) < window {
		return nil
	}
	out := m.scanExact(data)
	if w := m.scanWrapped(data); len(w) > 0 {
		out = dropContained(append(out, w...))
	}
	return out
}

// scanExact returns the matches of the patterns as they are.
func (m *Matcher) scanExact(data []byte) []Match {
	if len(data) < window {
		return nil
	}
	var out []Match
	filter := m.filter
	last := len(data) - window
	for i := 0; i <= last; i++ {
		x := binary.LittleEndian.Uint64(data[i:])
		h := hash8(x)
		if filter[h>>6]&(1<<(h&63)) == 0 {
			continue
		}
		for _, pi := range m.byPrefix[x] {
			p := &m.patterns[pi]
			if bytes.HasPrefix(data[i:], p.b) {
				for _, o := range p.owners {
					out = append(out, Match{SecretIndex: o.secret, Encoding: o.enc, Offset: i, Len: len(p.b)})
				}
			}
		}
	}
	return dropContained(out)
}

// dropContained removes matches lying inside a longer match of the same
// secret (e.g. a JSON escaping that is a substring of another form).
func dropContained(ms []Match) []Match {
	if len(ms) < 2 {
		return ms
	}
	sort.SliceStable(ms, func(a, b int) bool {
		if ms[a].Offset != ms[b].Offset {
			return ms[a].Offset < ms[b].Offset
		}
		if ms[a].Len != ms[b].Len {
			return ms[a].Len > ms[b].Len
		}
		return ms[a].SecretIndex < ms[b].SecretIndex
	})
	out := ms[:0]
	end := make(map[int]int) // secret → end of its furthest match so far
	for _, mt := range ms {
		e := mt.Offset + mt.Len
		if prev, ok := end[mt.SecretIndex]; ok && e <= prev {
			continue
		}
		end[mt.SecretIndex] = max(end[mt.SecretIndex], e)
		out = append(out, mt)
	}
	sort.SliceStable(out, func(a, b int) bool {
		if out[a].Offset != out[b].Offset {
			return out[a].Offset < out[b].Offset
		}
		return out[a].SecretIndex < out[b].SecretIndex
	})
	return out
}

type form struct {
	enc string
	b   []byte
}

// forms lists the encoded forms of v, raw first. Forms may repeat; the
// caller deduplicates.
func forms(v []byte) []form {
	fs := []form{{EncRaw, append([]byte(nil), v...)}}
	if b := unwrappedBody(v); b != nil {
		fs = append(fs, form{EncRaw, b}) // a PEM key's body, however wrapped
	}
	for _, e := range []struct {
		name string
		enc  *base64.Encoding
	}{{EncBase64, base64.StdEncoding}, {EncBase64URL, base64.URLEncoding}} {
		for p := 0; p < 3; p++ {
			fs = append(fs, form{e.name, base64Fragment(e.enc, v, p)})
		}
	}
	h := make([]byte, hex.EncodedLen(len(v)))
	hex.Encode(h, v)
	fs = append(fs, form{EncHex, h}, form{EncHex, bytes.ToUpper(h)})

	s := string(v)
	for _, u := range []string{url.QueryEscape(s), url.PathEscape(s), userinfoEscape(s)} {
		if u != s {
			fs = append(fs, form{EncURL, []byte(u)})
		}
	}
	if utf8.Valid(v) {
		for _, j := range jsonEscapes(s) {
			if j != s {
				fs = append(fs, form{EncJSON, []byte(j)})
			}
		}
	}
	return fs
}

// base64Fragment encodes v preceded by p unknown bytes and keeps only the
// characters that depend on v alone: character i covers bits [6i, 6i+6) of
// the input, so it is stable iff 6i >= 8p (not touched by the prefix) and
// 6i+6 <= 8(p+len(v)) (not touched by the unknown next byte or padding).
func base64Fragment(enc *base64.Encoding, v []byte, p int) []byte {
	in := make([]byte, p+len(v))
	copy(in[p:], v)
	out := make([]byte, enc.EncodedLen(len(in)))
	enc.Encode(out, in)
	clear(in)
	start := (8*p + 5) / 6
	end := 8 * (p + len(v)) / 6
	frag := append([]byte(nil), out[start:end]...)
	clear(out)
	return frag
}

// userinfoEscape is the escaping of a password in a URL's userinfo (as in
// DATABASE_URL=postgres://user:PASSWORD@host/db).
func userinfoEscape(s string) string {
	u := url.UserPassword("", s).String()
	return strings.TrimPrefix(u, ":")
}

// jsonEscapes returns the JSON string escapings of s without quotes: Go's
// default (HTML-safe), without HTML escaping, and with "/" escaped as "\/"
// (as PHP and others write it).
func jsonEscapes(s string) []string {
	var out []string
	b, _ := json.Marshal(s)
	out = append(out, string(b[1:len(b)-1]))
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)
	plain := strings.TrimSuffix(buf.String(), "\n")
	plain = plain[1 : len(plain)-1]
	out = append(out, plain)
	if strings.Contains(plain, "/") {
		out = append(out, strings.ReplaceAll(plain, "/", `\/`))
	}
	return out
}
