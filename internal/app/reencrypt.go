package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/config"
	"github.com/rekeyhq/rekey/internal/reencrypt"
)

// dataKeyMigrator re-encrypts the columns a data key encrypts, as the
// migrate step of its rotation.
type dataKeyMigrator struct{ w *wiring }

var _ rekey.Migrator = (*dataKeyMigrator)(nil)

// Migrate implements rekey.Migrator.
func (d *dataKeyMigrator) Migrate(ctx context.Context, env string, spec *rekey.Spec, pending, current rekey.VersionValue, rotationID string) error {
	res, err := d.w.reencrypt(ctx, spec, current.Value, pending.Value, rotationID)
	if res == nil {
		return err
	}
	// The figures of the run, in the audit log (fail closed: a run whose
	// record cannot be written reports an error, and recovery runs it again).
	outcome := "ok"
	if err != nil {
		outcome = "incomplete"
	}
	detail := fmt.Sprintf("rotation %s: %d values re-encrypted from v%d, %d already on v%d, %d empty, %d open with neither key, %d revisited after concurrent writes",
		rotationID, res.Reencrypted, current.N, res.AlreadyNew, pending.N, res.Empty, res.Failed, res.Revisited)
	if aerr := d.w.e.Store.Update(ctx, func(tx rekey.Tx) error {
		_, err := tx.Audit(rekey.AuditEntry{Actor: d.w.e.Actor, Action: "rotate.reencrypt", Env: env, Secret: spec.Name, Version: pending.N, Fingerprint: pending.Fingerprint, Outcome: outcome, Detail: detail})
		return err
	}); aerr != nil && err == nil {
		return aerr
	}
	return err
}

// reencrypt moves spec's columns from old to new, resuming job id's
// checkpoint, with progress on stderr. Undecryptable values are listed and
// make the error wrap rekey.ErrIncomplete.
func (w *wiring) reencrypt(ctx context.Context, spec *rekey.Spec, old, new rekey.Value, id string) (*reencrypt.Result, error) {
	rs := spec.Reencrypt
	if rs == nil {
		return nil, rekey.Errorf(rekey.CodeInvalid, "%s has no reencrypt section", spec.Name)
	}
	cfg := *rs
	if err := reencrypt.Validate(cfg); err != nil {
		return nil, rekey.Wrap(rekey.CodeInvalid, err, "reencrypt of %s (rekey.yaml line %d)", spec.Name, spec.Line)
	}
	vals, err := w.liveValues(ctx)
	if err != nil {
		return nil, err
	}
	defer vals.Wipe()
	dsn, err := vals.Resolve(rs.Database)
	if err != nil {
		return nil, err
	}
	replicas, err := replicaConns(vals, rs.Replicas) // the lag throttle's named replicas (replicas.go)
	if err != nil {
		return nil, err
	}
	stderr := w.s.RedactedStderr(ctx, w.e.Store, old, new) // a command codec's stderr
	defer stderr.Close()
	progress, done := w.s.progress("re-encrypting " + spec.Name)
	rc := w.newRunControl(spec) // `rekey reencrypt pause|resume|pace` from another process
	defer rc.close()
	rc.endLine = done
	job := reencrypt.Job{DSN: dsn.RevealString(), Config: cfg, Old: old, New: new, JobID: id,
		Progress: rc.progress(progress), Control: rc.control, Stderr: stderr, Replicas: replicas, OnLag: w.lagNotes, OnPace: w.paceNotes()}
	res, err := reencrypt.Run(ctx, job)
	done()
	switch {
	case res != nil && errors.Is(err, reencrypt.ErrInterrupted):
		w.say("re-encryption of %s stopped by the interruption after %d values in %s: the rest resume from the checkpoint",
			spec.Name, res.Reencrypted, res.Duration.Round(time.Millisecond))
	case res != nil:
		w.say("re-encrypted %d values of %s in %s (%d already on the new key, %d empty, %d revisited after concurrent writes)",
			res.Reencrypted, spec.Name, res.Duration.Round(time.Millisecond), res.AlreadyNew, res.Empty, res.Revisited)
	}
	if res != nil {
		for _, f := range res.Failures {
			w.s.warnf("opens with neither key, left as it is: %s", f)
		}
	}
	if errors.Is(err, reencrypt.ErrUndecryptable) {
		return res, &rekey.Error{Code: rekey.CodeVerifyFailed, Msg: fmt.Sprintf("%d values of %s open with neither the old nor the new key", res.Failed, spec.Name),
			Hint: "they are listed above and were not touched; the old key is kept until they are fixed", Err: errors.Join(rekey.ErrIncomplete, err)}
	}
	if err != nil {
		return res, rekey.Wrap(rekey.ErrorCode(err), err, "re-encrypt %s", spec.Name)
	}
	return res, nil
}

// Rehearse runs the re-encryption of spec on a copy of its database, from
// its keys (keys[0] the current one; the others, previous and pending,
// open values too) to a fresh throwaway one (never stored), and returns
// the figures (the command prints them). The copy is made (and dropped)
// through admin when it is set, else by the role of dsn.
func (s *Session) Rehearse(ctx context.Context, st rekey.Store, spec *rekey.Spec, keys []rekey.Value, dsn, admin rekey.Value) (*reencrypt.Rehearsal, error) {
	cur := keys[0]
	gen := spec.Generator
	if gen.Bytes == 0 {
		gen = rekey.DataKeyGenerator
	}
	throwaway, err := gen.Generate(nil)
	if err != nil {
		return nil, err
	}
	defer throwaway.Wipe()
	stderr := s.RedactedStderr(ctx, st, append([]rekey.Value{throwaway, dsn, admin}, keys...)...)
	defer stderr.Close()
	progress, done := s.progress("rehearsing " + spec.Name)
	job := reencrypt.Job{DSN: dsn.RevealString(), Config: *spec.Reencrypt, Old: cur, New: throwaway, Also: keys[1:],
		JobID: time.Now().UTC().Format("20060102T150405Z"), Progress: progress, Stderr: stderr, AdminDSN: admin.RevealString()}
	reh, err := reencrypt.Rehearse(ctx, job)
	done()
	if errors.Is(err, reencrypt.ErrNoCreateDB) {
		hint := rekey.ErrorHint(err) + ": pass --admin-secret NAME (a secret of rekey.yaml holding a postgres:// URL of a role with CREATEDB on that server), or declare one on the database password's secret (postgres: {changed_by: admin, admin_secret: NAME}): the rehearsal uses it"
		if admin.Len() > 0 {
			hint = "the admin connection's role needs CREATEDB (or superuser) on that server"
		}
		return reh, rekey.Wrap(rekey.ErrorCode(err), err, "rehearse the re-encryption of %s", spec.Name).WithHint("%s", hint)
	}
	if err != nil && !errors.Is(err, reencrypt.ErrUndecryptable) {
		return reh, rekey.Wrap(rekey.ErrorCode(err), err, "rehearse the re-encryption of %s", spec.Name)
	}
	return reh, err
}

// ProgressFunc starts rendering the progress of a long run called what;
// done ends it.
type ProgressFunc func(what string) (update func(reencrypt.Progress), done func())

func (s *Session) progress(what string) (func(reencrypt.Progress), func()) {
	if s.Opts.Progress == nil {
		return nil, func() {}
	}
	return s.Opts.Progress(what)
}

// checkDataKeyColumns looks the configured tables and columns of each data
// key among names up in its database (the catalog only), before a
// rotation creates anything: a typo (patients.emial) is named with the
// nearest column, and no new key is sealed or published. With
// warnUnreachable (a dry run; reencrypt, whose run would say it) a
// database that cannot be reached is a warning, not an error.
func (s *Session) checkDataKeyColumns(ctx context.Context, st rekey.Store, cfg *config.Config, env string, names []string, warnUnreachable bool) error {
	var specs []*rekey.Spec
	for _, n := range names {
		if sp, ok := cfg.Secret(n); ok && sp.Kind == rekey.KindDataKey && sp.Reencrypt != nil {
			specs = append(specs, sp)
		}
	}
	if len(specs) == 0 {
		return nil
	}
	vals, err := ResolveValues(ctx, st, cfg, env, Current, nil)
	if err != nil {
		return err
	}
	defer vals.Wipe()
	for _, sp := range specs {
		if err := reencrypt.Validate(*sp.Reencrypt); err != nil {
			return rekey.Wrap(rekey.CodeInvalid, err, "reencrypt of %s (rekey.yaml line %d)", sp.Name, sp.Line)
		}
		dsn, err := vals.Resolve(sp.Reencrypt.Database)
		if err != nil {
			return err
		}
		err = reencrypt.Check(ctx, dsn.RevealString(), *sp.Reencrypt)
		dsn.Wipe()
		switch {
		case err == nil:
		case rekey.ErrorCode(err) == rekey.CodeNotFound:
			return rekey.Wrap(rekey.CodeNotFound, err, "reencrypt of %s (rekey.yaml line %d): nothing was rotated", sp.Name, sp.Line)
		case warnUnreachable:
			s.warnf("could not look up the columns of %s: %v", sp.Name, err)
		default:
			return rekey.Wrap(rekey.ErrorCode(err), err, "look up the columns of %s before rotating it (nothing was rotated)", sp.Name)
		}
	}
	return nil
}
