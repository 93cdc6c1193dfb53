package doctor

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/config"
)

// TestStrengthReadsEnv: the strength check reads the value each .env target
// holds for each managed secret and reports the weak ones for their kind
// with file, line and name (never the value) and the fix; a .env that
// cannot be parsed is a WARN, a missing one is status's to report.
func TestStrengthReadsEnv(t *testing.T) {
	dir := t.TempDir()
	env := filepath.Join(dir, ".env")
	cfg := &config.Config{
		Dir: dir,
		Secrets: []rekey.Spec{
			{Name: "JWT_SECRET", Kind: rekey.KindGenerated, Generator: rekey.JWTGenerator},
			{Name: "ANTHROPIC_API_KEY", Kind: rekey.KindManual},
		},
		Environments: []config.Environment{{Name: "production", Targets: []config.Target{{Name: "app", Type: config.TargetDotenv, Path: env}}}},
	}
	d := &run{ctx: context.Background(), cfg: cfg}
	write := func(s string) {
		if err := os.WriteFile(env, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	write("PORT=8080\nJWT_SECRET=hunter2hunter2\nANTHROPIC_API_KEY=sk-test-123\n")
	c := d.checkStrength(nil, nil)
	if c.Status != Fail ||
		!strings.Contains(c.Detail, ".env:2: JWT_SECRET (production) is weak: an estimated") ||
		!strings.Contains(c.Detail, ".env:3: ANTHROPIC_API_KEY (production) is weak: 11 characters, short for an API key (at least 20)") {
		t.Errorf("weak .env: %+v", c)
	}
	if strings.Contains(c.Detail+c.Fix, "hunter2") || strings.Contains(c.Detail+c.Fix, "sk-test-123") {
		t.Errorf("the check holds a value: %+v", c)
	}
	if !strings.Contains(c.Fix, "JWT_SECRET: let rekey generate one: `rekey rotate JWT_SECRET`") {
		t.Errorf("fix: %s", c.Fix)
	}

	// The store's weak values come first, with their own fix.
	c = d.checkStrength([]string{"DATABASE_PASSWORD (production): 40 bits"}, nil)
	if !strings.HasPrefix(c.Detail, "weak: DATABASE_PASSWORD (production): 40 bits; .env:2: JWT_SECRET") || !strings.HasPrefix(c.Fix, "rotate them to generated values") {
		t.Errorf("store and .env: %+v", c)
	}

	write("JWT_SECRET=" + strings.Repeat("c2VjcmV0", 12) + "\nANTHROPIC_API_KEY=sk-ant-api03-abcdefghijklmnopqrstuvwxyz012345\n")
	if c := d.checkStrength(nil, nil); c.Status != Pass {
		t.Errorf("strong .env: %+v", c)
	}

	write("JWT_SECRET='unterminated\n")
	if c := d.checkStrength(nil, nil); c.Status != Warn || !strings.Contains(c.Detail, "could not read .env") {
		t.Errorf("unparsable .env: %+v", c)
	}

	os.Remove(env)
	if c := d.checkStrength(nil, nil); c.Status != Pass {
		t.Errorf("missing .env: %+v", c)
	}
}
