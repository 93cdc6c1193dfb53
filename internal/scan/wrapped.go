package scan

import (
	"bytes"
	"strings"
)

// A value can be written wrapped across lines: a PEM body or MIME base64 at
// 64 or 76 columns, a long value folded in YAML, each line indented. The
// exact search (Scan) cannot see it, since its forms hold no line break.
// scanWrapped finds such an occurrence without slowing the exact search:
// only at a line break preceded by at least minWrapTail characters of the
// base64/hex alphabet and followed (after blanks) by another of them does it
// join the run of such lines, without their breaks and indentation, and
// search the joined text; a match that crosses a removed break is reported,
// with the encoding's name followed by "-wrapped", at the place of its
// first character. Text without such lines costs one IndexByte per line and
// a look at the bytes around each break.

// minWrapTail is how many alphabet characters must end a line for the next
// one to be looked at as its continuation (a full PEM or MIME line has 64
// or 76; an assignment folded at 76 columns has most of its line).
const minWrapTail = 16

// wrapped is the suffix of the encoding of a match found across lines.
const wrapped = "-wrapped"

// wrapChars is the alphabet of a wrapped value: base64, base64url and hex.
var wrapChars = func() (t [256]bool) {
	for c := range 256 {
		t[c] = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '+' || c == '/' || c == '=' || c == '-' || c == '_'
	}
	return t
}()

func isWrapChar(c byte) bool { return wrapChars[c] }

// seg is a piece of a joined run: joined[at:] comes from data[from:].
type seg struct{ at, from int }

// offset maps an offset of the joined text to the data's.
func offset(segs []seg, j int) int {
	k := len(segs) - 1
	for k > 0 && segs[k].at > j {
		k--
	}
	return segs[k].from + j - segs[k].at
}

// scanWrapped returns the matches in data that cross a line break of a run
// of wrapped lines (not sorted).
func (m *Matcher) scanWrapped(data []byte) []Match {
	var out []Match
	var joined []byte
	var segs []seg // where each line's piece of joined comes from
	for i := 0; i < len(data); {
		j := bytes.IndexByte(data[i:], '\n')
		if j < 0 {
			break
		}
		nl := i + j
		e := nl
		if e > i && data[e-1] == '\r' {
			e--
		}
		s := e
		for s > i && e-s < minWrapTail && isWrapChar(data[s-1]) {
			s--
		}
		if e-s < minWrapTail || !continues(data, nl+1) {
			i = nl + 1
			continue
		}
		for s > i && isWrapChar(data[s-1]) {
			s--
		}
		joined, segs = joined[:0], segs[:0]
		next := joinRun(data, s, e, &joined, &segs)
		for p := nl + 1; ; {
			k := skipBlanks(data, p)
			r := k
			for r < len(data) && wrapChars[data[r]] {
				r++
			}
			next = joinRun(data, k, r, &joined, &segs)
			le := r
			if le < len(data) && data[le] == '\r' {
				le++
			}
			if le >= len(data) || data[le] != '\n' || !continues(data, le+1) {
				break // the run ends inside this line, or the next does not continue it
			}
			p = le + 1
			next = p
		}
		out = append(out, m.crossing(joined, segs)...)
		clear(joined)
		i = max(next, nl+1)
	}
	return out
}

// continues reports whether the line at p starts, after blanks, with an
// alphabet character.
func continues(data []byte, p int) bool {
	k := skipBlanks(data, p)
	return k < len(data) && isWrapChar(data[k])
}

func skipBlanks(data []byte, p int) int {
	for p < len(data) && (data[p] == ' ' || data[p] == '\t') {
		p++
	}
	return p
}

// joinRun appends data[s:e] to joined and where it comes from to segs; it
// returns e.
func joinRun(data []byte, s, e int, joined *[]byte, segs *[]seg) int {
	*segs = append(*segs, seg{len(*joined), s})
	*joined = append(*joined, data[s:e]...)
	return e
}

// crossing returns the matches of joined that cross one of its removed
// breaks (the starts of segs but the first), positioned in the data.
func (m *Matcher) crossing(joined []byte, segs []seg) []Match {
	var out []Match
	for _, mt := range m.scanExact(joined) {
		end := mt.Offset + mt.Len
		crosses := false
		for _, sg := range segs[1:] {
			if mt.Offset < sg.at && sg.at < end {
				crosses = true
				break
			}
		}
		if !crosses {
			continue // found by the exact search
		}
		start := offset(segs, mt.Offset)
		out = append(out, Match{SecretIndex: mt.SecretIndex, Encoding: mt.Encoding + wrapped, Offset: start, Len: offset(segs, end-1) + 1 - start})
	}
	return out
}

// unwrappedBody is the body of a value written on several lines (a PEM
// key): its lines made only of alphabet characters, joined without breaks
// or indentation; "" when the value has no such lines, or they are short.
func unwrappedBody(v []byte) []byte {
	if !bytes.ContainsRune(v, '\n') {
		return nil
	}
	var b []byte
	for _, l := range strings.Split(string(v), "\n") {
		l = strings.TrimSpace(l)
		if l != "" && strings.IndexFunc(l, func(r rune) bool { return r > 0x7f || !isWrapChar(byte(r)) }) < 0 {
			b = append(b, l...)
		}
	}
	if len(b) < 2*minWrapTail {
		clear(b)
		return nil
	}
	return b
}
