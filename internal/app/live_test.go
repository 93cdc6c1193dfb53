package app

import (
	"context"
	"strings"
	"testing"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/config"
)

// TestResolveValues: the one resolver reads current (or pending, for Live)
// values with their attributes, renders the derived values, records the read
// in the same transaction, and reports a derived value whose template does
// not render instead of leaving it out silently.
func TestResolveValues(t *testing.T) {
	ctx := context.Background()
	st := newStore(t,
		testVersion{"DATABASE_PASSWORD", "current-pw", rekey.LabelCurrent, map[string]string{"role": "app_blue"}},
		testVersion{"DATABASE_PASSWORD", "pending-pw", rekey.LabelPending, map[string]string{"role": "app_green"}})
	cfg := &config.Config{
		Secrets: []rekey.Spec{{Name: "DATABASE_PASSWORD", Kind: rekey.KindPostgresPassword}, {Name: "API_KEY", Kind: rekey.KindManual}},
		Derived: []rekey.Derived{
			{Name: "DATABASE_URL", Template: rekey.MustParseTemplate("postgres://{{ DATABASE_PASSWORD.role }}:{{ DATABASE_PASSWORD }}@db/app")},
			{Name: "API_URL", Template: rekey.MustParseTemplate("https://x:{{ API_KEY }}@api")}, // API_KEY has no value
		},
	}

	var audited []string
	v, err := ResolveValues(ctx, st, cfg, "production", Current, func(names []string) rekey.AuditEntry {
		audited = names
		return rekey.AuditEntry{Actor: "t", Action: "test.read", Env: "production", Outcome: "started"}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Wipe()
	if got := strings.Join(audited, ","); got != "DATABASE_PASSWORD" {
		t.Errorf("audited names %q", got)
	}
	url, err := v.Resolve("DATABASE_URL")
	if err != nil || url.RevealString() != "postgres://app_blue:current-pw@db/app" {
		t.Errorf("DATABASE_URL: %v", err)
	}
	if _, err := v.Resolve("API_URL"); err == nil || !strings.Contains(err.Error(), "API_URL does not render") {
		t.Errorf("a derived value that does not render: %v", err)
	}
	if f := v.Failed(); len(f) != 1 || !strings.HasPrefix(f[0], "API_URL: ") {
		t.Errorf("Failed() = %q", f)
	}
	if _, err := v.Resolve("NOPE"); rekey.ErrorCode(err) != rekey.CodeNotFound {
		t.Errorf("unknown name: %v", err)
	}
	if got := v.Redact("pw=current-pw and pending-pw"); strings.Contains(got, "current-pw") || strings.Contains(got, "pending-pw") {
		t.Errorf("not redacted: %q", got)
	}
	var found bool
	if err := st.View(ctx, func(tx rekey.Tx) error {
		es, err := tx.AuditLog(rekey.AuditFilter{})
		for _, e := range es {
			found = found || e.Action == "test.read"
		}
		return err
	}); err != nil || !found {
		t.Errorf("the read is not in the audit log (%v)", err)
	}

	live, err := ResolveValues(ctx, st, cfg, "production", Live, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Wipe()
	url, err = live.Resolve("DATABASE_URL")
	if err != nil || url.RevealString() != "postgres://app_green:pending-pw@db/app" {
		t.Errorf("live DATABASE_URL: %v", err)
	}
}
