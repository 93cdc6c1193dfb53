package app

import (
	"context"
	"errors"
	"slices"
	"strings"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/config"
	"github.com/rekeyhq/rekey/internal/reencrypt"
)

// DataKeys returns the named data keys, or all of them.
func DataKeys(specs []rekey.Spec, names []string) ([]*rekey.Spec, error) {
	var out []*rekey.Spec
	for i := range specs {
		s := &specs[i]
		if s.Kind != rekey.KindDataKey {
			continue
		}
		if len(names) == 0 || slices.Contains(names, s.Name) {
			out = append(out, s)
		}
	}
	for _, n := range names {
		found := false
		for _, s := range out {
			found = found || s.Name == n
		}
		if !found {
			return nil, rekey.Errorf(rekey.CodeNotFound, "%s is not a data key of rekey.yaml", n).WithHint("`rekey status` lists the secrets and their kinds")
		}
	}
	if len(out) == 0 {
		return nil, rekey.Errorf(rekey.CodeNotFound, "rekey.yaml has no data key (kind: data-key)")
	}
	for _, s := range out {
		if s.Reencrypt == nil {
			return nil, rekey.Errorf(rekey.CodeInvalid, "%s has no reencrypt section", s.Name).
				WithHint("add reencrypt: {database: DATABASE_URL, codec: aes-256-gcm, encoding: base64, columns: [table.column]} to %s", s.Name)
		}
	}
	return out, nil
}

// KeyCount is what `rekey reencrypt --verify` counted for one data key:
// the values of its columns under its current version, its previous one
// and the pending one (a rotation created and not finished: interrupted,
// or running now), each a known key.
type KeyCount struct {
	Spec *rekey.Spec
	// Keys are the versions counted, in the order of the Counts' ByKey:
	// current first, then previous and pending when they exist.
	Keys   []CountedKey
	Counts *reencrypt.Counts
}

// CountedKey is one version --verify counted under, and its label.
type CountedKey struct {
	N     int
	Label rekey.Label
}

// dataKeyRun is one data key's current, previous and pending values and
// the database its rows are in, for --verify and --rehearse (and, for
// --rehearse, the admin connection that makes the copy, if any).
type dataKeyRun struct {
	spec               *rekey.Spec
	cur, prev, pend    rekey.Value
	curN, prevN, pendN int
	dsn                rekey.Value
	admin              rekey.Value
}

// adminFunc picks the admin connection of a data key's rehearsal.
type adminFunc func(cfg *config.Config, vals *Values, spec *rekey.Spec, dsn rekey.Value) (rekey.Value, error)

// keys returns the versions k holds (current, previous, pending), with
// their values.
func (k dataKeyRun) keys() ([]CountedKey, []rekey.Value) {
	ck := []CountedKey{{N: k.curN, Label: rekey.LabelCurrent}}
	vals := []rekey.Value{k.cur}
	if k.prevN != 0 {
		ck = append(ck, CountedKey{N: k.prevN, Label: rekey.LabelPrevious})
		vals = append(vals, k.prev)
	}
	if k.pendN != 0 {
		ck = append(ck, CountedKey{N: k.pendN, Label: rekey.LabelPending})
		vals = append(vals, k.pend)
	}
	return ck, vals
}

// eachDataKey reads, for each data key named (all when none), its current
// and previous values and its database, recording the read (action) first,
// and calls fn. Neither changes the store or the application's data.
func (s *Session) eachDataKey(ctx context.Context, names []string, action string, admin adminFunc, fn func(st rekey.Store, k dataKeyRun) error) error {
	cfg, st, env, err := s.openEnv(ctx)
	if err != nil {
		return err
	}
	specs, err := DataKeys(cfg.Secrets, names)
	if err != nil {
		return err
	}
	var sn []string
	for _, sp := range specs {
		sn = append(sn, sp.Name)
	}
	vals, err := s.readValues(ctx, st, cfg, env.Name, action, "keys: "+strings.Join(sn, ","))
	if err != nil {
		return err
	}
	defer vals.Wipe()
	for _, sp := range specs {
		k := dataKeyRun{spec: sp}
		if err := st.View(ctx, func(tx rekey.Tx) error {
			c, err := tx.Labeled(env.Name, sp.Name, rekey.LabelCurrent)
			if err != nil {
				return err
			}
			k.curN = c.N
			if k.cur, err = tx.Value(env.Name, sp.Name, c.N); err != nil {
				return err
			}
			if p, err := tx.Labeled(env.Name, sp.Name, rekey.LabelPrevious); err == nil {
				k.prevN = p.N
				if k.prev, err = tx.Value(env.Name, sp.Name, p.N); err != nil {
					return err
				}
			}
			// A rotation created and not finished: rows may already be
			// sealed under its key.
			if p, err := tx.Labeled(env.Name, sp.Name, rekey.LabelPending); err == nil && p.N != k.curN {
				k.pendN = p.N
				if k.pend, err = tx.Value(env.Name, sp.Name, p.N); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return err
		}
		if k.dsn, err = vals.Resolve(sp.Reencrypt.Database); err != nil {
			return err
		}
		if admin != nil {
			if k.admin, err = admin(cfg, vals, sp, k.dsn); err != nil {
				return err
			}
		}
		if err := fn(st, k); err != nil {
			return err
		}
	}
	return nil
}

// CountKeys counts, per data key named (all when none), the values of its
// columns under its current, previous and pending versions (`rekey
// reencrypt --verify`); fn hears each key's figures.
func (s *Session) CountKeys(ctx context.Context, names []string, fn func(KeyCount)) error {
	return s.eachDataKey(ctx, names, "reencrypt.verify", nil, func(st rekey.Store, k dataKeyRun) error {
		counted, keys := k.keys()
		stderr := s.RedactedStderr(ctx, st, k.cur, k.prev, k.pend, k.dsn)
		progress, done := s.progress("counting " + k.spec.Name)
		counts, err := reencrypt.Count(ctx, reencrypt.CountJob{DSN: k.dsn.RevealString(), Config: *k.spec.Reencrypt, Keys: keys,
			Progress: progress, Stderr: stderr})
		stderr.Close()
		done()
		if err != nil {
			return rekey.Wrap(rekey.ErrorCode(err), err, "count the values of %s", k.spec.Name)
		}
		fn(KeyCount{Spec: k.spec, Keys: counted, Counts: counts})
		return nil
	})
}

// RehearseKeys rehearses the re-encryption of each data key named (all when
// none) on a copy of its database (`rekey reencrypt --rehearse`); fn hears
// each rehearsal, and whether values opened with neither key
// (reencrypt.ErrUndecryptable, not an error of the run). The copy is made
// through an admin connection when there is one (rehearsalAdmin), so the
// application's role needs no CREATEDB; adminSecret names it explicitly.
func (s *Session) RehearseKeys(ctx context.Context, names []string, adminSecret string, fn func(*rekey.Spec, *reencrypt.Rehearsal, error)) error {
	admin := func(cfg *config.Config, vals *Values, spec *rekey.Spec, dsn rekey.Value) (rekey.Value, error) {
		return rehearsalAdmin(cfg, vals, adminSecret, spec, dsn)
	}
	return s.eachDataKey(ctx, names, "reencrypt.rehearse", admin, func(st rekey.Store, k dataKeyRun) error {
		_, keys := k.keys()
		reh, err := s.Rehearse(ctx, st, k.spec, keys, k.dsn, k.admin)
		fn(k.spec, reh, err)
		if errors.Is(err, reencrypt.ErrUndecryptable) {
			return nil
		}
		return err
	})
}

// rehearsalAdmin is the admin connection of spec's rehearsal: the secret
// named (--admin-secret), which must be a URL of the server spec's
// database is on; else the admin_secret of a postgres-password secret
// changed by the admin (changed_by: admin) whose URL is on that server;
// else none (the zero Value: the role makes the copy itself).
func rehearsalAdmin(cfg *config.Config, vals *Values, name string, spec *rekey.Spec, dsn rekey.Value) (rekey.Value, error) {
	if name != "" {
		if !slices.Contains(vals.Keys(), name) {
			return rekey.Value{}, rekey.UnknownSecret(name, cfg.Secrets)
		}
		v, err := vals.Resolve(name)
		if err != nil {
			return rekey.Value{}, err
		}
		if !reencrypt.SameServer(v, dsn) {
			v.Wipe()
			return rekey.Value{}, rekey.Errorf(rekey.CodeInvalid, "--admin-secret %s is not a postgres:// URL of the server %s's database (%s) is on", name, spec.Name, spec.Reencrypt.Database).
				WithHint("name a secret holding the URL of a role with CREATEDB on that server")
		}
		return v, nil
	}
	for _, sp := range cfg.Secrets {
		if sp.Postgres == nil || sp.Postgres.ChangedBy != "admin" || sp.Postgres.AdminSecret == "" {
			continue
		}
		if v, err := vals.Resolve(sp.Postgres.AdminSecret); err == nil {
			if reencrypt.SameServer(v, dsn) {
				return v, nil
			}
			v.Wipe()
		}
	}
	return rekey.Value{}, nil
}

// FinishReencryption resumes the re-encryption of each data key named (all
// when none) whose rotation left rows on the previous key; done hears each
// key that finished, and the follow-up reencrypt:NAME of each open incident
// is marked done. It returns how many did.
func (s *Session) FinishReencryption(ctx context.Context, names []string, narrate func(string, ...any), done func(name string)) (int, error) {
	cfg, st, env, e, err := s.Mutate(ctx)
	if err != nil {
		return 0, err
	}
	specs, err := DataKeys(cfg.Secrets, names)
	if err != nil {
		return 0, err
	}
	var sn []string
	for _, sp := range specs {
		sn = append(sn, sp.Name)
	}
	if err := s.checkDataKeyColumns(ctx, st, cfg, env.Name, sn, true); err != nil {
		return 0, err
	}
	e.Progress = narrate
	n := 0
	for _, sp := range specs {
		ok, err := e.FinishMigration(ctx, sp.Name)
		if err != nil {
			return n, err
		}
		if ok {
			n++
			done(sp.Name)
			ids, err := s.completeFollowUp(ctx, st, env.Name, rekey.FollowUpReencrypt+sp.Name, "rekey reencrypt moved every row to the current key")
			if err != nil {
				return n, err
			}
			for _, id := range ids {
				if narrate != nil {
					narrate("incident %s: follow-up %s%s done", id, rekey.FollowUpReencrypt, sp.Name)
				}
			}
		}
	}
	return n, nil
}
