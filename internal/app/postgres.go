package app

import (
	"context"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/config"
	"github.com/rekeyhq/rekey/internal/postgres"
)

// PostgresApplier changes PostgreSQL role passwords during rotations of env.
// Templates that reference other secrets, and the admin connection
// (changed_by: admin), are rendered with the store's current values of
// env; Expire reads the current version to never end the role in use.
func (s *Session) PostgresApplier(cfg *config.Config, env *config.Environment) rekey.Applier {
	name := env.Name
	return &postgres.Applier{
		Derived: cfg.DerivedFor(name),
		Values: func(ctx context.Context) (map[string]rekey.Value, error) {
			if s.store == nil {
				return nil, rekey.Errorf(rekey.CodeInternal, "the store is not open")
			}
			out := map[string]rekey.Value{}
			err := s.store.View(ctx, func(tx rekey.Tx) error {
				_, err := eachLive(tx, cfg, name, Current, func(sp *rekey.Spec, _ rekey.Version, val rekey.Value) { out[sp.Name] = val })
				return err
			})
			return out, err
		},
		Current: func(ctx context.Context, secret string) (rekey.Version, error) {
			if s.store == nil {
				return rekey.Version{}, rekey.Errorf(rekey.CodeInternal, "the store is not open")
			}
			var v rekey.Version
			err := s.store.View(ctx, func(tx rekey.Tx) error {
				var err error
				v, err = tx.Labeled(name, secret, rekey.LabelCurrent)
				return err
			})
			return v, err
		},
	}
}

// WithServerNotes returns ctx carrying where PostgreSQL's notes go: a
// server WARNING (with any password removed) and, once per role, that a
// role's MD5 password was replaced by a SCRAM verifier. warn hears each.
func WithServerNotes(ctx context.Context, warn func(format string, args ...any)) context.Context {
	if warn == nil {
		return ctx
	}
	return postgres.WithNotes(ctx, func(note string) { warn("%s", note) })
}
