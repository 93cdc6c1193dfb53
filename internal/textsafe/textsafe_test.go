package textsafe

import (
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestQuote(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", ""},
		{"app/.env", "app/.env"},
		{"café/naïve ✓.env", "café/naïve ✓.env"},
		{`plain "quotes" and \ stay`, `plain "quotes" and \ stay`},
		{"x\x1b[2K\rclean\n.env", `"x\x1b[2K\rclean\n.env"`},
		{"tab\there", `"tab\there"`},
		{"del\x7f", `"del\x7f"`},
		{"c1\u009b31m", `"c1\u009b31m"`},
		{"bad\x9bbyte", `"bad\x9bbyte"`},
		{"rtl\u202etxt.exe", `"rtl\u202etxt.exe"`},
		{"iso\u2066x\u2069", `"iso\u2066x\u2069"`},
		{"ls\u2028ps\u2029", `"ls\u2028ps\u2029"`},
		{"q\"b\\\n", `"q\"b\\\n"`},
	} {
		if got := Quote(c.in); got != c.want {
			t.Errorf("Quote(%q) = %s, want %s", c.in, got, c.want)
		}
	}
	if got := Lines("line one\n\tline \x1b[31mtwo\r"); got != "line one\n\tline \\x1b[31mtwo\\r" {
		t.Errorf("Lines: %q", got)
	}
}

// FuzzQuote: whatever the input, the quoted form holds no unsafe character
// and unquotes to the input.
func FuzzQuote(f *testing.F) {
	for _, s := range []string{"", "a", "x\x1b[2K\rclean\n.env", "\u202e", "\xff\xfe", "\"\\", "\ufffd"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		q := Quote(s)
		for _, r := range q {
			if Unsafe(r) {
				t.Fatalf("Quote(%q) = %q holds %U", s, q, r)
			}
		}
		if !utf8.ValidString(q) {
			t.Fatalf("Quote(%q) is not valid UTF-8", s)
		}
		if Needs(s) {
			u, err := strconv.Unquote(q)
			if err != nil || u != s {
				t.Fatalf("Unquote(Quote(%q)) = %q, %v", s, u, err)
			}
		} else if q != s {
			t.Fatalf("Quote changed a safe string %q", s)
		}
		l := Lines(s)
		for _, r := range l {
			if Unsafe(r) && r != '\n' && r != '\t' {
				t.Fatalf("Lines(%q) = %q holds %U", s, l, r)
			}
		}
		if strings.Count(l, "\n") != strings.Count(s, "\n") {
			t.Fatalf("Lines changed the number of lines")
		}
	})
}
