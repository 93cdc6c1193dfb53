package rekey_test

import (
	"testing"

	"github.com/rekeyhq/rekey"
)

func TestClassifySeedAndURLs(t *testing.T) {
	vals := map[string]string{
		"DATABASE_PASSWORD": "s3cr3t-pw-0123456789abcdef",
		"DATABASE_URL":      "postgres://postgres:s3cr3t-pw-0123456789abcdef@localhost:5432/atlas",
		"PG_ADMIN_URL":      "postgres://admin:another-pw@localhost:5432/postgres",
		"REDIS_URL":         "redis://localhost:6379/0",
		"JWT_SECRET":        "dGhpcyBpcyBhIHRlc3Qgc2VjcmV0IHZhbHVlIG9mIGVub3VnaCBsZW5ndGggdG8gbG9vayByZWFs",
		"ENCRYPTION_KEY":    "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
		"ANTHROPIC_API_KEY": "sk-ant-api03-xxxxxxxxxxxxxxxxxxxxxxxx",
		"RUST_LOG":          "info",
		"PORT":              "8080",
	}
	keys := []string{"DATABASE_PASSWORD", "DATABASE_URL", "PG_ADMIN_URL", "REDIS_URL", "JWT_SECRET", "ENCRYPTION_KEY", "ANTHROPIC_API_KEY", "RUST_LOG", "PORT"}
	want := map[string]string{
		"DATABASE_PASSWORD": string(rekey.KindPostgresPassword),
		"DATABASE_URL":      "derived",
		"PG_ADMIN_URL":      string(rekey.KindManual),
		"REDIS_URL":         "not a secret",
		"JWT_SECRET":        string(rekey.KindGenerated),
		"ENCRYPTION_KEY":    string(rekey.KindDataKey),
		"ANTHROPIC_API_KEY": string(rekey.KindManual),
		"RUST_LOG":          "not a secret",
		"PORT":              "not a secret",
	}
	for _, c := range rekey.Classify(keys, vals) {
		got := "not a secret"
		switch {
		case c.Derived != nil:
			got = "derived"
		case c.Secret:
			got = string(c.Spec.Kind)
		}
		if got != want[c.Key] {
			t.Errorf("%s classified %s (%s), want %s", c.Key, got, c.Reason, want[c.Key])
		}
	}
}
