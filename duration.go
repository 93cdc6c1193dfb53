package rekey

import (
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// DurationHint says how to write a duration (rotate_every, grace, timeouts).
const DurationHint = "use 90d, 2w, 36h or 30m (days, weeks, hours, minutes), or Go syntax such as 1h30m"

var (
	dayDuration  = regexp.MustCompile(`^([0-9]+)([dw])$`)
	durationLike = regexp.MustCompile(`^[-+]?[0-9][0-9A-Za-z. ]{0,15}$`)
)

// ParseDuration parses a rotation or reminder period: a whole number of days
// or weeks ("90d", "2w"), or anything time.ParseDuration accepts ("36h",
// "30m", "1h30m"). The result must be positive.
func ParseDuration(s string) (time.Duration, error) {
	bad := func(format string) error {
		// Quote only what looks like an attempt at a duration, never a
		// value pasted into the wrong place.
		q := "(not shown)"
		if durationLike.MatchString(s) {
			q = strconv.Quote(s)
		}
		return Errorf(CodeInvalid, format, q).WithHint(DurationHint)
	}
	switch {
	case s == "":
		return 0, Errorf(CodeInvalid, "empty duration").WithHint(DurationHint)
	case strings.HasPrefix(s, "-"):
		return 0, bad("duration %s is negative")
	}
	if m := dayDuration.FindStringSubmatch(s); m != nil {
		unit := Day
		if m[2] == "w" {
			unit = 7 * Day
		}
		n, err := strconv.ParseInt(m[1], 10, 64)
		if err != nil || n > int64(math.MaxInt64/unit) {
			return 0, bad("duration %s is too long")
		}
		if n == 0 {
			return 0, bad("duration %s is zero")
		}
		return time.Duration(n) * unit, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, bad("bad duration %s")
	}
	if d <= 0 {
		return 0, bad("duration %s is zero")
	}
	return d, nil
}

// FormatDuration formats d as ParseDuration reads it: "180d" when d is a
// whole number of days, else Go's form without trailing zero units
// ("36h", "1h30m", "90s").
func FormatDuration(d time.Duration) string {
	if d > 0 && d%Day == 0 {
		return strconv.FormatInt(int64(d/Day), 10) + "d"
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
