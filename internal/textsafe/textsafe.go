// Package textsafe makes strings rekey does not control (file names from a
// repository, commit metadata, REKEY_ACTOR, rekey.yaml text, rule ids) safe
// to print in text output: a string holding a character that a terminal or
// a reader would act on instead of showing is printed quoted and escaped,
// so it can neither move the cursor, erase or recolour what was printed,
// start a new line (faking a clean result or an extra row), nor reorder the
// line visually. JSON and SARIF output do not use it: they stay exact.
//
// The characters escaped ("unsafe") are:
//   - C0 controls U+0000–U+001F (including tab, newline, carriage return and
//     escape) and DEL U+007F;
//   - C1 controls U+0080–U+009F (e.g. U+009B, a one-character CSI);
//   - bytes that are not valid UTF-8 (a terminal in an 8-bit mode may read
//     0x9B as CSI);
//   - the Unicode bidirectional formatting characters: U+061C, U+200E,
//     U+200F, the embeddings and overrides U+202A–U+202E and the isolates
//     U+2066–U+2069 (they reorder what follows on the line: "Trojan Source");
//   - the line and paragraph separators U+2028 and U+2029.
//
// Other characters, including printable non-ASCII text, are kept as they are.
package textsafe

import (
	"strings"
	"unicode/utf8"
)

// Unsafe reports whether r is escaped by Quote.
func Unsafe(r rune) bool {
	switch {
	case r < 0x20, r == 0x7f, r >= 0x80 && r <= 0x9f:
		return true
	case r == 0x061c, r == 0x200e, r == 0x200f, r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069:
		return true
	case r == 0x2028, r == 0x2029:
		return true
	case r == utf8.RuneError:
		return true // an invalid byte (a real U+FFFD is escaped too: harmless)
	}
	return false
}

// Needs reports whether s holds an unsafe character.
func Needs(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			return true
		} else if c >= 0x80 {
			return needsSlow(s[i:])
		}
	}
	return false
}

func needsSlow(s string) bool {
	for _, r := range s {
		if Unsafe(r) {
			return true
		}
	}
	return false
}

// Quote returns s unchanged when it holds no unsafe character; otherwise s
// in double quotes with every unsafe character escaped as Go and C do (\n,
// \r, \t, \x1b, \u202e; an invalid byte as \xNN) and `"` and `\` escaped,
// so that strconv.Unquote gives s back. A file name printed this way can
// always be told from one whose name is the escaped text: git prints unusual
// paths the same way.
func Quote(s string) string {
	if !Needs(s) {
		return s
	}
	return `"` + escape(s, "") + `"`
}

// Lines escapes the unsafe characters of a message that may span several
// lines (an error, a warning) except newline and tab, without quoting it.
// A newline in a name inside a message should be quoted by whoever put the
// name there (Quote); Lines makes sure nothing else in it reaches the
// terminal raw.
func Lines(s string) string {
	if !Needs(s) {
		return s
	}
	return escape(s, "\n\t")
}

const hexDigits = "0123456789abcdef"

// cEscapes holds the letter of the C escape of each control character that
// has one (\a ... \v), 0 for the others.
var cEscapes = [...]byte{'\a': 'a', '\b': 'b', '\t': 't', '\n': 'n', '\v': 'v', '\f': 'f', '\r': 'r'}

// escape escapes the unsafe characters of s except those in keep; with keep
// empty it also escapes `"` and `\` (for a quoted string).
func escape(s, keep string) string {
	var b strings.Builder
	b.Grow(len(s) + 8)
	quoted := keep == ""
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		c := s[i]
		switch {
		case r == utf8.RuneError && size == 1:
			b.WriteString(`\x`)
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&15])
		case quoted && (r == '"' || r == '\\'):
			b.WriteByte('\\')
			b.WriteByte(c)
		case !Unsafe(r) || (r < utf8.RuneSelf && strings.IndexByte(keep, c) >= 0):
			b.WriteString(s[i : i+size])
		case int(r) < len(cEscapes) && cEscapes[r] != 0:
			b.WriteByte('\\')
			b.WriteByte(cEscapes[r])
		case r < utf8.RuneSelf:
			b.WriteString(`\x`)
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&15])
		default:
			b.WriteString(`\u`)
			for shift := 12; shift >= 0; shift -= 4 {
				b.WriteByte(hexDigits[(r>>uint(shift))&15])
			}
		}
		i += size
	}
	return b.String()
}
