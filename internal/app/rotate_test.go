package app

import (
	"slices"
	"strings"
	"testing"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/config"
	"github.com/rekeyhq/rekey/internal/engine"
)

// TestWarnNoConsumer: a secret no service of the environment consumes (the
// secret itself, a value derived from it, or its NAME_PREVIOUS) gets a plan
// warning with the rekey.yaml stanza; one a service consumes does not.
func TestWarnNoConsumer(t *testing.T) {
	specs := []rekey.Spec{
		{Name: "JWT_SECRET", Kind: rekey.KindGenerated},
		{Name: "DATABASE_PASSWORD", Kind: rekey.KindPostgresPassword},
		{Name: "SESSION_SECRET", Kind: rekey.KindGenerated, Sessions: &rekey.SessionsSpec{Mode: rekey.SessionsGraceful}},
	}
	plan := func() *engine.Plan {
		return &engine.Plan{Secrets: []engine.PlanSecret{{Name: "JWT_SECRET"}, {Name: "DATABASE_PASSWORD", Derived: []string{"DATABASE_URL"}}, {Name: "SESSION_SECRET"}}}
	}
	warned := func(p *engine.Plan) []string {
		var out []string
		for _, s := range p.Secrets {
			if len(s.Warnings) > 0 {
				out = append(out, s.Name)
			}
		}
		return out
	}

	// No services at all: every secret, with the stanza to declare one.
	cfg := &config.Config{Secrets: specs, Environments: []config.Environment{{Name: "production"}}}
	p := plan()
	warnNoConsumer(p, cfg, "production")
	if got := warned(p); !slices.Equal(got, []string{"JWT_SECRET", "DATABASE_PASSWORD", "SESSION_SECRET"}) {
		t.Fatalf("warned %v", got)
	}
	w := p.Secrets[0].Warnings[0]
	for _, want := range []string{"no service in rekey.yaml consumes JWT_SECRET (environment production)", "keeps the old value until it is restarted", "`services: {api: {restart: [systemctl, restart, api], consumes: [JWT_SECRET]}}`"} {
		if !strings.Contains(w, want) {
			t.Errorf("warning %q lacks %q", w, want)
		}
	}

	// A service reading the derived URL consumes the password; one reading
	// SESSION_SECRET_PREVIOUS consumes SESSION_SECRET; JWT_SECRET is left,
	// with the consumes: list to add it to. A service of another
	// environment does not count.
	cfg.Services = []rekey.Service{
		{Name: "api", Consumes: []string{"DATABASE_URL", "SESSION_SECRET_PREVIOUS"}},
		{Name: "staging-api", Consumes: []string{"JWT_SECRET"}, Environments: []string{"staging"}},
	}
	p = plan()
	warnNoConsumer(p, cfg, "production")
	if got := warned(p); !slices.Equal(got, []string{"JWT_SECRET"}) {
		t.Fatalf("warned %v", got)
	}
	if w := p.Secrets[0].Warnings[0]; !strings.Contains(w, "add JWT_SECRET to the consumes: list of the service that reads it") {
		t.Errorf("warning: %s", w)
	}

	// consumes: all
	cfg.Services = append(cfg.Services, rekey.Service{Name: "web", ConsumesAll: true})
	p = plan()
	warnNoConsumer(p, cfg, "production")
	if got := warned(p); len(got) != 0 {
		t.Errorf("warned %v with a service consuming all", got)
	}
}

// TestSplitUserManaged: an emergency names the user-managed keys it
// cannot rotate (all of rekey.yaml's with --all), and the commands that
// record their new values.
func TestSplitUserManaged(t *testing.T) {
	cfg := &config.Config{Secrets: []rekey.Spec{
		{Name: "JWT_SECRET", Kind: rekey.KindGenerated},
		{Name: "ANTHROPIC_API_KEY", Kind: rekey.KindManual},
		{Name: "STRIPE_KEY", Kind: rekey.KindManual},
	}}
	rest, manual := splitUserManaged(cfg, []string{"JWT_SECRET", "STRIPE_KEY"}, false)
	if !slices.Equal(rest, []string{"JWT_SECRET"}) || !slices.Equal(manual, []string{"STRIPE_KEY"}) {
		t.Errorf("named: rest %v, manual %v", rest, manual)
	}
	rest, manual = splitUserManaged(cfg, nil, true)
	if len(rest) != 0 || !slices.Equal(manual, []string{"ANTHROPIC_API_KEY", "STRIPE_KEY"}) {
		t.Errorf("all: rest %v, manual %v", rest, manual)
	}
	got := (&PlannedRotation{UserManaged: manual}).Reminder()
	want := "emergency: ANTHROPIC_API_KEY and STRIPE_KEY are user-managed: rekey cannot rotate a key at its provider; revoke and reissue each there now, then record the new value: `rekey set ANTHROPIC_API_KEY`, `rekey set STRIPE_KEY` (value on stdin)"
	if got != want {
		t.Errorf("Reminder:\n%s\nwant:\n%s", got, want)
	}
	if (&PlannedRotation{}).Reminder() != "" {
		t.Error("a reminder without user-managed keys")
	}
}
