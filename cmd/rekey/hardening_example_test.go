package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// hdUnmanaged are secrets a .env holds that rekey does not manage (added
// after init, or named like nothing init recognises).
var hdUnmanaged = map[string]string{
	"WEBHOOK_SECRET":    "whsec_Mk3Lq8Tz2Vn6Rb9Xw4Pc7Hd1Jf5",
	"SMTP_PASSWD":       "Ts8kLp2Qw9Zx",
	"SENTRY_DSN":        "https://4f9c2a7b1e8d4c3fa6b5e0d9c8b7a6f5@o448812.ingest.sentry.io/5512347",
	"STRIPE_SIGNING":    "whsec_Qp7Wn2Kd9Lx4Tb8Rz3Vm6Hs1",
	"SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/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",
	"GH_DEPLOY":         "ghp_Ab3Cd5Ef7Gh9Ij2Kl4Mn6Op8Qr1St3Uv5Wx7",
	"REDIS_HOST":        "default:Rz5Qk8Wm3Lp7@redis.internal",
	"CACHE_SIGNATURE":   "4c1f8e2a9b7d6c5e3f0a1b2c3d4e5f6a",
}

// hdKept are values known not to be secret: example keeps them.
var hdKept = []string{"PORT=8080", "DB_PORT=5432", "API_HOST=api.internal", "LOG_LEVEL=info", "RUST_LOG=info,hyper=warn", "NODE_ENV=production", "ENABLE_SIGNUP=true", "FEATURE_NEW_UI=off"}

// TestHardenExampleUnmanagedSecrets: item 6. `rekey example` over a .env
// holding secrets rekey does not manage must replace every one of them, and
// doctor must fail a hand-written example holding any of them.
func TestHardenExampleUnmanagedSecrets(t *testing.T) {
	dir := t.TempDir()
	env := hdEnv(t)
	env["GIT_CEILING_DIRECTORIES"] = dir
	lines := []string{"# app", "JWT_SECRET=" + hdJWT}
	lines = append(lines, hdKept...)
	for _, k := range sortedKeys(hdUnmanaged) {
		lines = append(lines, k+"="+hdUnmanaged[k])
	}
	if err := os.WriteFile(filepath.Join(dir, ".env"), []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, errs, code := runIn(t, dir, env, "", "init", "--env-file", ".env"); code != 0 {
		t.Fatalf("init: exit %d\n%s%s", code, out, errs)
	}
	if out, errs, code := runIn(t, dir, env, "", "example"); code != 0 {
		t.Fatalf("example: exit %d\n%s%s", code, out, errs)
	}
	ex, _ := os.ReadFile(filepath.Join(dir, ".env.example"))
	for _, k := range sortedKeys(hdUnmanaged) {
		v := hdUnmanaged[k]
		for _, f := range []string{v, v[len(v)-12:]} {
			if strings.Contains(string(ex), f) {
				t.Errorf(".env.example keeps (part of) the value of %s:\n%s", k, ex)
				break
			}
		}
	}
	for _, kv := range hdKept {
		if !strings.Contains(string(ex), "\n"+kv+"\n") {
			t.Errorf(".env.example does not keep %s:\n%s", kv, ex)
		}
	}
	// doctor passes what example wrote...
	checks := hdDoctor(t, dir, env)
	if c := checks["example"]; c.Status != checkPass {
		t.Errorf("doctor on the written example: %s %s", c.Status, c.Detail)
	}
	// ...and fails an example holding any one of the unmanaged secrets.
	for _, k := range sortedKeys(hdUnmanaged) {
		v := hdUnmanaged[k]
		data := "PORT=8080\nJWT_SECRET=change-me\n" + k + "=" + v + "\n"
		if err := os.WriteFile(filepath.Join(dir, ".env.example"), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		c := hdDoctor(t, dir, env)["example"]
		if c.Status != checkFail || !strings.Contains(c.Detail, k) || !strings.Contains(c.Detail, ".env.example:3") {
			t.Errorf("doctor on an example holding %s: %s %s", k, c.Status, c.Detail)
		}
		if strings.Contains(c.Detail+c.Fix, v) {
			t.Errorf("doctor printed the value of %s", k)
		}
	}
}

func hdDoctor(t *testing.T, dir string, env map[string]string) map[string]doctorCheck {
	t.Helper()
	out, errs, code := runIn(t, dir, env, "", "doctor", "--json")
	if code != 0 && code != 1 {
		t.Fatalf("doctor: exit %d\n%s%s", code, out, errs)
	}
	var checks []doctorCheck
	if err := json.Unmarshal([]byte(out), &checks); err != nil {
		t.Fatalf("doctor --json: %v\n%s", err, out)
	}
	m := map[string]doctorCheck{}
	for _, c := range checks {
		m[c.Check] = c
	}
	return m
}
