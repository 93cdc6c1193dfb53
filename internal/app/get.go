package app

import (
	"context"

	"github.com/rekeyhq/rekey"
)

// Get reads version n (0 = the current one) of a secret of the session's
// environment for `rekey get`. The read is recorded in the same
// transaction: if the record cannot be written, no value is returned.
func (s *Session) Get(ctx context.Context, name string, n int) (rekey.Value, error) {
	cfg, st, env, err := s.openEnv(ctx)
	if err != nil {
		return rekey.Value{}, err
	}
	if _, ok := cfg.Secret(name); !ok && n == 0 {
		return rekey.Value{}, rekey.UnknownSecret(name, cfg.Secrets)
	}
	var val rekey.Value
	err = st.Update(ctx, func(tx rekey.Tx) error {
		v, err := version(tx, env.Name, name, n)
		if err != nil {
			return err
		}
		if val, err = tx.Value(env.Name, name, v.N); err != nil {
			return err
		}
		_, err = tx.Audit(rekey.AuditEntry{Actor: s.Actor(), Action: "get", Env: env.Name, Secret: name, Version: v.N, Fingerprint: v.Fingerprint, Outcome: "ok"})
		return err
	})
	return val, err
}

// version is version n of a secret, or its current one when n is 0.
func version(tx rekey.Tx, env, name string, n int) (rekey.Version, error) {
	if n == 0 {
		return tx.Labeled(env, name, rekey.LabelCurrent)
	}
	vs, err := tx.Versions(env, name)
	if err != nil {
		return rekey.Version{}, err
	}
	for _, x := range vs {
		if x.N == n {
			return x, nil
		}
	}
	return rekey.Version{}, rekey.Errorf(rekey.CodeNotFound, "%s has no version %d", name, n).WithHint("`rekey history %s` lists its versions", name)
}
