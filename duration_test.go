package rekey

import (
	"strings"
	"testing"
	"time"
)

func TestDurations(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		text string
	}{
		{"90d", 90 * Day, "90d"},
		{"2w", 14 * Day, "14d"},
		{"36h", 36 * time.Hour, "36h"},
		{"30m", 30 * time.Minute, "30m"},
		{"1h30m", 90 * time.Minute, "1h30m"},
		{"48h", 2 * Day, "2d"},
		{"90s", 90 * time.Second, "1m30s"},
		{"1h0m1s", time.Hour + time.Second, "1h0m1s"},
		{"1.5s", 1500 * time.Millisecond, "1.5s"},
	} {
		got, err := ParseDuration(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			continue
		}
		if s := FormatDuration(got); s != tc.text {
			t.Errorf("FormatDuration(%v) = %q, want %q", got, s, tc.text)
		}
		if back, err := ParseDuration(FormatDuration(got)); err != nil || back != got {
			t.Errorf("ParseDuration(FormatDuration(%v)) = %v, %v", got, back, err)
		}
	}
	for _, in := range []string{"90 days", "-1d", "0d", "", "0", "0s", "-36h", "d", "1.5d", "90D", "99999999999999999999d", "200000w", " 90d"} {
		if d, err := ParseDuration(in); err == nil {
			t.Errorf("ParseDuration(%q) = %v, want an error", in, d)
		} else if h := ErrorHint(err); !strings.Contains(h, "90d, 2w, 36h") {
			t.Errorf("ParseDuration(%q): hint %q", in, h)
		}
	}
}
