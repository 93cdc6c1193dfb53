package app

import (
	"strings"
	"testing"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/config"
)

// TestRehearsalAdmin: which admin connection a rehearsal uses. The one
// --admin-secret names (a misspelt name gets a did-you-mean; a URL of
// another server is refused); else the admin_secret of a changed_by: admin
// PostgreSQL secret on the database's server; else none.
func TestRehearsalAdmin(t *testing.T) {
	db := rekey.NewValueString("postgres://app:pw@db.internal:5432/atlas")
	admin := "postgres://admin:apw@db.internal:5432/postgres"
	other := "postgres://admin:opw@elsewhere:5432/postgres"
	spec := &rekey.Spec{Name: "ENCRYPTION_KEY", Kind: rekey.KindDataKey, Reencrypt: &rekey.ReencryptSpec{Database: "DATABASE_URL"}}
	cfg := &config.Config{Secrets: []rekey.Spec{
		{Name: "OTHER_PASSWORD", Kind: rekey.KindPostgresPassword, Postgres: &rekey.PostgresSpec{ChangedBy: "admin", AdminSecret: "OTHER_ADMIN_URL"}},
		{Name: "DATABASE_PASSWORD", Kind: rekey.KindPostgresPassword, Postgres: &rekey.PostgresSpec{ChangedBy: "admin", AdminSecret: "PG_ADMIN_URL"}},
		{Name: "PG_ADMIN_URL", Kind: rekey.KindManual},
		{Name: "OTHER_ADMIN_URL", Kind: rekey.KindManual},
		*spec,
	}}
	vals := &Values{m: map[string]rekey.Value{
		"DATABASE_URL":    db,
		"PG_ADMIN_URL":    rekey.NewValueString(admin),
		"OTHER_ADMIN_URL": rekey.NewValueString(other),
	}}
	// Configured: the admin secret on the same server, not the other one.
	got, err := rehearsalAdmin(cfg, vals, "", spec, db)
	if err != nil || got.RevealString() != admin {
		t.Fatalf("from changed_by: admin: %v (same server: %v)", err, got.RevealString() == admin)
	}
	// Named.
	if got, err := rehearsalAdmin(cfg, vals, "PG_ADMIN_URL", spec, db); err != nil || got.RevealString() != admin {
		t.Fatalf("--admin-secret PG_ADMIN_URL: %v", err)
	}
	_, err = rehearsalAdmin(cfg, vals, "PG_ADMN_URL", spec, db)
	if err == nil || rekey.ErrorCode(err) != rekey.CodeNotFound || !strings.Contains(rekey.ErrorHint(err), "did you mean PG_ADMIN_URL") {
		t.Fatalf("a misspelt --admin-secret: %v (hint %q)", err, rekey.ErrorHint(err))
	}
	_, err = rehearsalAdmin(cfg, vals, "OTHER_ADMIN_URL", spec, db)
	if err == nil || !strings.Contains(err.Error(), "not a postgres:// URL of the server") || strings.Contains(err.Error(), "opw") {
		t.Fatalf("an admin URL of another server: %v", err)
	}
	// None configured: the role makes the copy itself.
	cfg.Secrets[1].Postgres.ChangedBy = "self"
	if got, err := rehearsalAdmin(cfg, vals, "", spec, db); err != nil || !got.IsZero() {
		t.Fatalf("no admin configured: %v, zero %v", err, got.IsZero())
	}
}
