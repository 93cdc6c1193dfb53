package postgres_test

import (
	"context"
	"strings"
	"testing"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/postgres"
)

func TestApplierParams(t *testing.T) {
	a := &postgres.Applier{
		Derived: []rekey.Derived{{Name: "DATABASE_URL", Template: rekey.MustParseTemplate("postgres://app:{{DATABASE_PASSWORD}}@db.example:6543/{{DB_NAME}}?sslmode=require")}},
		Values: func(context.Context) (map[string]rekey.Value, error) {
			return map[string]rekey.Value{"DB_NAME": rekey.NewValueString("atlas"), "DATABASE_PASSWORD": rekey.NewValueString("stale")}, nil
		},
	}
	spec := &rekey.Spec{Name: "DATABASE_PASSWORD", Kind: rekey.KindPostgresPassword,
		Postgres: &rekey.PostgresSpec{URLFrom: "DATABASE_URL", Port: 7000, Role: "owner", ChangedBy: "self", Strategy: "single"}}
	p, err := a.Params(context.Background(), spec, rekey.NewValueString("s3cret-current"))
	if err != nil {
		t.Fatal(err)
	}
	if p.Host != "db.example" || p.Port != 7000 || p.Database != "atlas" || p.User != "owner" || p.SSLMode != "require" || string(p.Password) != "s3cret-current" {
		t.Fatalf("params = %v (password ok: %v)", p, string(p.Password) == "s3cret-current")
	}
}

func TestApplierRefusesUnsupported(t *testing.T) {
	a := &postgres.Applier{}
	for _, pg := range []*rekey.PostgresSpec{
		{ChangedBy: "oracle", Strategy: "single", Host: "127.0.0.1", Role: "app"},
		{ChangedBy: "admin", Strategy: "single", Host: "127.0.0.1", Role: "app"}, // no admin_secret
		{ChangedBy: "self", Strategy: "triple", Host: "127.0.0.1", Role: "app"},
		{ChangedBy: "self", Strategy: "alternating", Host: "127.0.0.1", Role: "app"}, // no roles
		{ChangedBy: "self", Strategy: "alternating", Roles: []string{"app", "app"}, Host: "127.0.0.1"},
		nil,
	} {
		spec := &rekey.Spec{Name: "DATABASE_PASSWORD", Kind: rekey.KindPostgresPassword, Postgres: pg}
		err := a.Apply(context.Background(), "production", spec, rekey.VersionValue{Value: rekey.NewValueString("new-pw")}, rekey.VersionValue{Value: rekey.NewValueString("old-pw")})
		if err == nil {
			t.Fatalf("%+v: Apply succeeded", pg)
		}
		if strings.Contains(err.Error(), "new-pw") || strings.Contains(err.Error(), "old-pw") {
			t.Fatalf("error shows a password: %v", err)
		}
		// Apply changed nothing: Revert does not touch the database.
		if err := a.Revert(context.Background(), "production", spec, rekey.VersionValue{Value: rekey.NewValueString("new-pw")}, rekey.VersionValue{Value: rekey.NewValueString("old-pw")}); err != nil {
			t.Fatalf("%+v: Revert: %v", pg, err)
		}
	}
}
