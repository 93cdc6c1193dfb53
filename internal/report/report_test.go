package report

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rekeyhq/rekey"
)

var update = flag.Bool("update", false, "rewrite golden files")

func date(s string) time.Time {
	t, err := time.Parse("2006-01-02", s)
	if err != nil {
		panic(err)
	}
	return t
}

// seedReport is the runbook's own situation: three secrets rotated on
// 2025-11-18, the third-party key user-managed, viewed on 2026-03-01.
func seedReport() *Report {
	specs := []rekey.Spec{
		{Name: "JWT_SECRET", Kind: rekey.KindGenerated, Purpose: "JWT token signing", Generator: rekey.JWTGenerator, Period: 180 * rekey.Day, Storage: ".env", Encryption: "At rest", Access: "Backend only"},
		{Name: "ENCRYPTION_KEY", Kind: rekey.KindDataKey, Purpose: "PII encryption", Generator: rekey.DataKeyGenerator, Period: 90 * rekey.Day, Storage: ".env", Encryption: "At rest", Access: "Backend only"},
		{Name: "DATABASE_PASSWORD", Kind: rekey.KindPostgresPassword, Purpose: "PostgreSQL auth", Generator: rekey.PasswordGenerator, Period: 180 * rekey.Day, Storage: ".env", Encryption: "At rest", Access: "Backend + DB"},
		{Name: "ANTHROPIC_API_KEY", Kind: rekey.KindManual, Purpose: "AI API access", Storage: ".env", Encryption: "At rest", Access: "Backend | ops"},
	}
	current := map[string]rekey.Version{
		"JWT_SECRET":        {N: 4, CreatedAt: date("2025-11-18"), Fingerprint: "fp:0123456789abcdef"},
		"ENCRYPTION_KEY":    {N: 3, CreatedAt: date("2025-11-18"), Fingerprint: "fp:1111111111111111"},
		"DATABASE_PASSWORD": {N: 2, CreatedAt: date("2025-08-01"), Fingerprint: "fp:2222222222222222"},
		"ANTHROPIC_API_KEY": {N: 1, CreatedAt: date("2025-06-01"), Fingerprint: "fp:3333333333333333"},
	}
	bits := map[string]int{"JWT_SECRET": 512, "ENCRYPTION_KEY": 256, "DATABASE_PASSWORD": 192, "ANTHROPIC_API_KEY": 200}
	now := date("2026-03-01")
	status := rekey.ComputeStatus("production", specs, current, bits, now)
	return Build("Atlas PharmaTech", "production", specs, status, now)
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./report -update)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s mismatch (-want +got):\n%s", name, diff)
	}
}

func TestMarkdownGolden(t *testing.T) {
	var b bytes.Buffer
	if err := seedReport().WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	golden(t, "seed.md", b.Bytes())
}

func TestJSONGolden(t *testing.T) {
	var b bytes.Buffer
	if err := seedReport().WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	golden(t, "seed.json", b.Bytes())
}

func TestSections(t *testing.T) {
	r := seedReport()
	if got, want := r.LatestRotation, date("2025-11-18"); !got.Equal(want) {
		t.Errorf("LatestRotation=%v, want %v", got, want)
	}
	var rotated []string
	for _, s := range r.Rotated {
		rotated = append(rotated, s.Name)
	}
	if diff := cmp.Diff([]string{"JWT_SECRET", "ENCRYPTION_KEY"}, rotated); diff != "" {
		t.Errorf("rotated (-want +got):\n%s", diff)
	}
	if got, want := len(r.NotRotated), 2; got != want {
		t.Fatalf("len(NotRotated)=%d, want %d", got, want)
	}
	for _, row := range r.Schedule {
		if row.Name == "ENCRYPTION_KEY" && row.State != rekey.StateOverdue {
			t.Errorf("ENCRYPTION_KEY state=%s, want overdue (90 days after 2025-11-18 is before 2026-03-01)", row.State)
		}
	}
}

func TestIncompleteReencryption(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	specs := []rekey.Spec{{Name: "ENCRYPTION_KEY", Kind: rekey.KindDataKey, Period: 90 * rekey.Day}}
	st := []rekey.SecretStatus{{Name: "ENCRYPTION_KEY", Kind: rekey.KindDataKey, Version: 2, LastRotated: now, State: rekey.StateIncomplete, Bits: 256, Fingerprint: "fp:0123456789abcdef"}}
	var b strings.Builder
	if err := Build("Atlas", "production", specs, st, now).WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "ENCRYPTION_KEY (256-bit cryptographically random, v2, fp:0123456789abcdef; re-encryption incomplete") {
		t.Errorf("report does not say the re-encryption is incomplete:\n%s", b.String())
	}
	if !st[0].NeedsAttention() {
		t.Error("an incomplete re-encryption does not make status exit non-zero")
	}
}

// TestRolledBack: a value a rollback restored is listed as rolled back,
// with the age of the version that first held it, never as a fresh
// rotation, and does not move the latest rotation date.
func TestRolledBack(t *testing.T) {
	specs := []rekey.Spec{
		{Name: "JWT_SECRET", Kind: rekey.KindGenerated, Generator: rekey.JWTGenerator, Period: 180 * rekey.Day},
		{Name: "ENCRYPTION_KEY", Kind: rekey.KindDataKey, Generator: rekey.DataKeyGenerator, Period: 90 * rekey.Day},
	}
	v1 := rekey.Version{N: 1, CreatedAt: date("2025-01-10")}
	current := map[string]rekey.Version{
		"JWT_SECRET":     {N: 3, CreatedAt: date("2025-08-01"), Fingerprint: "fp:0123456789abcdef", Source: rekey.SourceRollback, Attrs: rekey.RollbackAttrs(v1)},
		"ENCRYPTION_KEY": {N: 2, CreatedAt: date("2025-07-01"), Fingerprint: "fp:1111111111111111"},
	}
	now := date("2025-08-02")
	st := rekey.ComputeStatus("production", specs, current, map[string]int{"JWT_SECRET": 512, "ENCRYPTION_KEY": 256}, now)
	r := Build("Atlas", "production", specs, st, now)
	if len(r.RolledBack) != 1 || r.RolledBack[0].Name != "JWT_SECRET" || r.RolledBack[0].ValueOf != 1 || !r.RolledBack[0].ValueSince.Equal(date("2025-01-10")) {
		t.Fatalf("rolled back: %+v", r.RolledBack)
	}
	for _, s := range r.Rotated {
		if s.Name == "JWT_SECRET" {
			t.Error("a rollback is listed as a rotation")
		}
	}
	if !r.LatestRotation.Equal(date("2025-07-01")) {
		t.Errorf("latest rotation %v, want the data key's 2025-07-01", r.LatestRotation)
	}
	var b strings.Builder
	if err := r.WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	want := "### Rolled Back (an earlier value restored, not a rotation):\n- ↩️ JWT_SECRET (v3 restores v1's value, created 2025-01-10; rolled back 2025-08-01, fp:0123456789abcdef; overdue since 2025-07-09: run `rekey rotate JWT_SECRET`)\n"
	if !strings.Contains(b.String(), want) {
		t.Errorf("markdown:\n%s\nwant:\n%s", b.String(), want)
	}
	if !strings.Contains(b.String(), "| JWT_SECRET | 2025-01-10 | 2025-07-09 | 180 days | overdue |") {
		t.Errorf("schedule row:\n%s", b.String())
	}
}
