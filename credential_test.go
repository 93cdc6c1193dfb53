package rekey

import "testing"

func TestCredentialLike(t *testing.T) {
	for _, c := range []struct {
		key, v string
		like   bool
	}{
		// credentials
		{"WEBHOOK_SECRET", "whsec_Mk3Lq8Tz2Vn6Rb9Xw4Pc7Hd1Jf5", true},
		{"STRIPE", "sk_live_4eC39HqLyjWDarjtT1zdp7dc", true},
		{"X", "ghp_Ab3Cd5Ef7Gh9Ij2Kl4Mn6Op8Qr1St3Uv5Wx7", true},
		{"X", "xoxb-2048-4096-Ab3Cd5Ef7Gh9Ij2Kl", true},
		{"X", "AKIAIOSFODNN7EXAMPL3", true},
		{"SENTRY_DSN", "https://4f9c2a7b1e8d4c3fa6b5e0d9c8b7a6f5@o448812.ingest.sentry.io/5512347", true},
		{"SLACK_WEBHOOK_URL", "https://hooks.slack.com/services/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", true},
		{"REDIS_URL", "redis://default:Rz5Qk8Wm3Lp7@redis.internal:6379", true},
		{"MAPS", "https://maps.example.com/api?key=abc", true},
		{"DSN", "host=db password=Rz5Qk8Wm3Lp7", true},
		{"X", "4c1f8e2a9b7d6c5e3f0a1b2c3d4e5f6a", true},
		{"X", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U", true},
		{"X", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", true},
		{"SMTP_PASSWD", "Ts8kLp2Qw9Zx", true},
		{"DB_PASSWORD", "password123", true},
		{"REDIS_HOST", "default:Rz5Qk8Wm3Lp7@redis.internal", true},
		{"REDIS_HOST", ":Rz5Qk8Wm3Lp7@redis.internal:6379", true},
		{"BIND", "[::1]:8080", false},
		{"DB_HOST", "db.internal:5432", false},
		// not credentials
		{"PORT", "8080", false},
		{"API_HOST", "api.internal.example.com", false},
		{"DB_HOST", "db-01.prod.eu-west-1.rds.amazonaws.com", false},
		{"RUST_LOG", "info,hyper=warn,my_app::db=debug", false},
		{"NODE_ENV", "production", false},
		{"TZ", "America/Argentina/Buenos_Aires", false},
		{"PATH_X", "/usr/local/lib/python3.11/site-packages", false},
		{"VERSION", "1.24.3-alpine3.20", false},
		{"OPENAI_API_KEY", "sk-your-key-here-please", false},
		{"MAILGUN", "key-your-mailgun-key-here", false},
		{"JWT_SECRET", "change-me", false},
		{"API_TOKEN", "<your token>", false},
		{"API_TOKEN", "${API_TOKEN}", false},
		{"SECRET_KEY", "your-secret-key-1", false},
		{"REDIS_URL", "redis://localhost:6379/0", false},
		{"APP_URL", "https://app.example.com/login?next=/home", false},
		{"SERVICE_NAME", "my-service-production-eu-west-1", false},
		{"DESCRIPTION", "The quick brown fox jumps over the lazy dog 42 times", false},
	} {
		why := CredentialLike(c.key, c.v)
		if (why != "") != c.like {
			t.Errorf("CredentialLike(%s, %q) = %q, want credential %v", c.key, c.v, why, c.like)
		}
	}
}
