package config

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// dataKey is a data key's entry up to its reencrypt section's keys.
const dataKey = "  ENCRYPTION_KEY:\n    kind: data-key\n    generator: {bytes: 32, encoding: base64}\n" +
	"    reencrypt:\n      database: ENCRYPTION_KEY\n      columns: [t.c]\n"

func TestPaceKeys(t *testing.T) {
	for _, tc := range []struct {
		keys   string
		pace   string
		target time.Duration
		factor float64
		probe  string
	}{
		{keys: "", pace: ""},
		{keys: "      pace: full\n", pace: "full"},
		{keys: "      pace: adaptive\n      target_p99: 20ms\n", pace: "adaptive", target: 20 * time.Millisecond},
		{keys: "      target_p99: 3x\n", factor: 3},
		{keys: "      target_p99: 1.5x\n      probe: SELECT 1\n", factor: 1.5, probe: "SELECT 1"},
	} {
		c, err := Parse("rekey.yaml", []byte(head+"secrets:\n"+dataKey+tc.keys))
		if err != nil {
			t.Fatalf("%q: %v", tc.keys, err)
		}
		r := c.Secrets[0].Reencrypt
		if r.Pace != tc.pace || r.TargetP99 != tc.target || r.TargetFactor != tc.factor || r.Probe != tc.probe {
			t.Errorf("%q: got pace %q target %v factor %v probe %q", tc.keys, r.Pace, r.TargetP99, r.TargetFactor, r.Probe)
		}
	}
}

func TestPaceErrors(t *testing.T) {
	for _, tc := range []struct{ keys, msg, hint string }{
		{"      pace: slow # <-\n", "unknown pace of reencrypt of secret ENCRYPTION_KEY", "adaptive, full"},
		{"      target_p99: 0.5x # <-\n", "target_p99 of reencrypt of secret ENCRYPTION_KEY: the factor must be", "such as 3x"},
		{"      target_p99: fast # <-\n", "target_p99 of reencrypt of secret ENCRYPTION_KEY is neither", "such as 20ms"},
		{"      target_p99: -5ms # <-\n", "is neither a positive duration", "such as 20ms"},
		{"      mode: maintenance\n      pace: adaptive # <-\n", "pace: adaptive needs mode: online", "maintenance mode always runs at full pace"},
	} {
		y := head + "secrets:\n" + dataKey + tc.keys
		_, err := Parse("rekey.yaml", []byte(y))
		if err == nil {
			t.Fatalf("%q: no error", tc.keys)
		}
		line := markedLine(t, y)
		if want := "rekey.yaml:" + strconv.Itoa(line) + ":"; !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%q: error %q, want %s... %s", tc.keys, err, want, tc.msg)
		}
		if e, ok := err.(*Error); !ok || !strings.Contains(e.Hint, tc.hint) {
			t.Errorf("%q: hint of %v does not contain %q", tc.keys, err, tc.hint)
		}
	}
}
