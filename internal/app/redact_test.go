package app

import (
	"testing"

	"github.com/rekeyhq/rekey/internal/scan"
)

func TestRedactMatches(t *testing.T) {
	text := "0123456789abcdefghij"
	for _, tc := range []struct {
		ms   []scan.Match
		want string
	}{
		{nil, text},
		{[]scan.Match{{Offset: 2, Len: 3}}, "01[REDACTED]56789abcdefghij"},
		{[]scan.Match{{Offset: 0, Len: 3}, {Offset: 17, Len: 3}}, "[REDACTED]3456789abcdefg[REDACTED]"},
		// Overlapping and contained matches of several secrets go as one.
		{[]scan.Match{{Offset: 2, Len: 5}, {Offset: 4, Len: 6}, {Offset: 5, Len: 1}, {Offset: 10, Len: 2}}, "01[REDACTED]cdefghij"},
		{[]scan.Match{{Offset: 2, Len: 8}, {Offset: 3, Len: 2}}, "01[REDACTED]abcdefghij"},
	} {
		if got := redactMatches(text, tc.ms); got != tc.want {
			t.Errorf("%v: %q, want %q", tc.ms, got, tc.want)
		}
	}
}
