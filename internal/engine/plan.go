package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/rekeyhq/rekey"
)

// Plan describes what a rotation would do, for --dry-run and narration.
type Plan struct {
	Env     string
	Mode    rekey.Mode
	Secrets []PlanSecret
}

// PlanSecret is one secret of a Plan.
type PlanSecret struct {
	Name        string
	Kind        rekey.Kind
	FromVersion int
	ToVersion   int
	Generator   rekey.Generator
	Targets     []string // target names
	Derived     []string // derived values rewritten with it
	Steps       []string // one line per step of the table that does something for it
	Warnings    []string // what the user should know before it runs
}

// planned is what the plan lines of the steps are rendered from.
type planned struct {
	ps    *PlanSecret
	s     *rekey.Spec
	mode  rekey.Mode
	maint bool // a data key re-encrypted in maintenance mode
}

// refusal says why a secret cannot be rotated by Rotate, or "".
func (e *Engine) refusal(s *rekey.Spec, given bool) *rekey.Error {
	switch s.Kind {
	case rekey.KindManual:
		if given {
			return nil
		}
		return rekey.Errorf(rekey.CodeUnsafe, "%s is user-managed: rekey cannot generate it", s.Name).
			WithHint("rotate it at the provider, then record it with `rekey set %s` (value on stdin)", s.Name)
	case rekey.KindDataKey:
		if e.Migrators[rekey.KindDataKey] == nil || s.Reencrypt == nil {
			return rekey.Errorf(rekey.CodeUnsafe, "refusing to rotate %s: it is a data-encryption key and rekey.yaml does not say what it encrypts", s.Name).
				WithHint("a new %s without re-encrypting the existing rows makes every encrypted row unreadable: add reencrypt: {database: DATABASE_URL, codec: aes-256-gcm, encoding: base64, columns: [table.column]} to %s", s.Name, s.Name)
		}
	case rekey.KindPostgresPassword:
		if e.Appliers[rekey.KindPostgresPassword] == nil {
			return rekey.Errorf(rekey.CodeUnsafe, "refusing to rotate %s: changing the PostgreSQL role password is not available", s.Name).
				WithHint("a new %s in the .env without ALTER ROLE would lock the application out of its database", s.Name)
		}
	}
	return nil
}

// Plan checks that names can be rotated and describes the rotation.
func (e *Engine) Plan(ctx context.Context, names []string, mode rekey.Mode) (*Plan, error) {
	return e.plan(ctx, names, mode, false)
}

func (e *Engine) plan(ctx context.Context, names []string, mode rekey.Mode, given bool) (*Plan, error) {
	p := &Plan{Env: e.Env, Mode: mode}
	seen := map[string]bool{}
	err := e.Store.View(ctx, func(tx rekey.Tx) error {
		for _, name := range names {
			if seen[name] {
				continue
			}
			seen[name] = true
			ps, err := e.planSecret(tx, name, mode, given)
			if err != nil {
				return err
			}
			p.Secrets = append(p.Secrets, *ps)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(p.Secrets) == 0 {
		return nil, rekey.Errorf(rekey.CodeInvalid, "nothing to rotate")
	}
	return p, nil
}

// planSecret plans the rotation of one secret: its versions, what it is
// published with, a line per step of the table, and warnings.
func (e *Engine) planSecret(tx rekey.Tx, name string, mode rekey.Mode, given bool) (*PlanSecret, error) {
	s, ok := e.Spec(name)
	if !ok {
		return nil, rekey.UnknownSecret(name, e.Specs)
	}
	if r := e.refusal(s, given); r != nil {
		return nil, r
	}
	ps := &PlanSecret{Name: name, Kind: s.Kind, Generator: s.Generator, Targets: e.targetNames(s)}
	cur, err := tx.Labeled(e.Env, name, rekey.LabelCurrent)
	if err != nil && !errors.Is(err, rekey.ErrNotFound) {
		return nil, err
	}
	ps.FromVersion = cur.N
	if cur.Attrs[rekey.AttrReencrypt] == "incomplete" {
		return nil, rekey.Errorf(rekey.CodeConflict, "refusing to rotate %s: rows are still encrypted under v%d's predecessor", name, cur.N).
			WithHint("finish the last re-encryption first with `rekey reencrypt`; rotating now could strand those rows")
	}
	vs, err := tx.Versions(e.Env, name)
	if err != nil && !errors.Is(err, rekey.ErrNotFound) {
		return nil, err
	}
	ps.ToVersion = len(vs) + 1
	if len(vs) > 0 {
		ps.ToVersion = vs[len(vs)-1].N + 1
	}
	for _, d := range e.derivedOf([]string{name}) {
		ps.Derived = append(ps.Derived, d.Name)
	}
	if w := e.graceWarning(tx, s); w != "" {
		ps.Warnings = append(ps.Warnings, w)
	}
	p := &planned{ps: ps, s: s, mode: mode, maint: s.Reencrypt != nil && s.Reencrypt.Mode == rekey.ReencryptMaintenance}
	for _, st := range steps {
		if st.plan != nil {
			if line := st.plan(e, p); line != "" {
				ps.Steps = append(ps.Steps, line)
			}
		}
	}
	return ps, nil
}

// graceWarning says that a rotation of s ends its previous version's grace
// early, if it does.
func (e *Engine) graceWarning(tx rekey.Tx, s *rekey.Spec) string {
	if s.Grace() <= 0 {
		return ""
	}
	pv, err := tx.Labeled(e.Env, s.Name, rekey.LabelPrevious)
	if err != nil || pv.Attrs[rekey.AttrExpired] != "" {
		return ""
	}
	until, err := time.Parse(time.RFC3339, pv.Attrs[rekey.AttrGraceUntil])
	if err != nil || !e.now().Before(until) {
		return ""
	}
	return fmt.Sprintf("%s v%d is still in its grace period (until %s): this rotation ends it early, so what still uses it stops working now", s.Name, pv.N, until.UTC().Format(time.RFC3339))
}

// The plan lines of the steps.

func planCreate(_ *Engine, p *planned) string {
	return "create v" + fmt.Sprint(p.ps.ToVersion) + " (sealed, pending)"
}

func planApply(e *Engine, p *planned) string {
	if e.Appliers[p.s.Kind] == nil {
		return ""
	}
	return "apply to " + string(p.s.Kind)
}

func planStop(_ *Engine, p *planned) string {
	if !p.maint {
		return ""
	}
	return "stop the services that consume it"
}

func planMigrateMaintenance(_ *Engine, p *planned) string {
	if !p.maint {
		return ""
	}
	return "re-encrypt " + strings.Join(p.s.Reencrypt.Columns, ", ") + " from v" + fmt.Sprint(p.ps.FromVersion)
}

func planPublish(_ *Engine, p *planned) string {
	pub := "publish to " + strings.Join(p.ps.Targets, ", ")
	if len(p.ps.Derived) > 0 {
		pub += " (with " + strings.Join(p.ps.Derived, ", ") + ")"
	}
	if k := p.s.PreviousKey(); k != "" && p.ps.FromVersion != 0 && (p.mode != rekey.ModeEmergency || p.s.Kind == rekey.KindDataKey) {
		pub += "; v" + fmt.Sprint(p.ps.FromVersion) + " as " + k
		if g := p.s.Grace(); g > 0 {
			pub += " for " + rekey.FormatDays(g)
		}
	}
	return pub
}

func planRestart(e *Engine, _ *planned) string {
	if e.Services == nil {
		return ""
	}
	return "restart the services that consume it"
}

func planMigrateOnline(e *Engine, p *planned) string {
	if p.s.Reencrypt == nil || p.maint {
		return ""
	}
	if e.DeferOnline {
		return "keep " + p.s.PreviousKey() + " published: " + strings.Join(p.s.Reencrypt.Columns, ", ") + " are re-encrypted from v" + fmt.Sprint(p.ps.FromVersion) + " after the rotation (online, `rekey reencrypt`)"
	}
	return "re-encrypt " + strings.Join(p.s.Reencrypt.Columns, ", ") + " from v" + fmt.Sprint(p.ps.FromVersion) + " (online), then remove " + p.s.PreviousKey()
}

func planHooks(_ *Engine, p *planned) string {
	if p.s.Sessions == nil || len(p.s.Sessions.OnRotate) == 0 {
		return ""
	}
	return fmt.Sprintf("run %d on_rotate hooks", len(p.s.Sessions.OnRotate))
}

func planVerify(e *Engine, _ *planned) string {
	if e.Checks != nil {
		return "verify (targets, then the checks)"
	}
	return "verify"
}

func planFinish(_ *Engine, p *planned) string {
	return "finish (v" + fmt.Sprint(p.ps.ToVersion) + " current)"
}
