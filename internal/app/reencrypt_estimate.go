package app

import (
	"context"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/config"
	"github.com/rekeyhq/rekey/internal/reencrypt"
)

// estimateDataKeys is checkDataKeyColumns of a dry run, with the estimate
// of each data key's re-encryption (reencrypt.EstimateRun: read-only)
// besides: it looks the configured tables and columns up (a typo is an
// error, before anything), and returns the estimates by secret name. A
// database that cannot be reached, or any other failure of the estimate,
// is a warning: the plan goes without that estimate. The estimate opens
// the sample with the key's current value and re-encrypts it, in memory,
// under a throwaway key (nothing is written, nothing stored).
func (s *Session) estimateDataKeys(ctx context.Context, st rekey.Store, cfg *config.Config, env string, names []string) (map[string]*reencrypt.Estimate, error) {
	var specs []*rekey.Spec
	for _, n := range names {
		if sp, ok := cfg.Secret(n); ok && sp.Kind == rekey.KindDataKey && sp.Reencrypt != nil {
			specs = append(specs, sp)
		}
	}
	if len(specs) == 0 {
		return nil, nil
	}
	vals, err := ResolveValues(ctx, st, cfg, env, Current, nil)
	if err != nil {
		return nil, err
	}
	defer vals.Wipe()
	out := map[string]*reencrypt.Estimate{}
	for _, sp := range specs {
		if err := reencrypt.Validate(*sp.Reencrypt); err != nil {
			return nil, rekey.Wrap(rekey.CodeInvalid, err, "reencrypt of %s (rekey.yaml line %d)", sp.Name, sp.Line)
		}
		dsn, err := vals.Resolve(sp.Reencrypt.Database)
		if err != nil {
			return nil, err
		}
		est, err := s.estimateDataKey(ctx, st, sp, vals, dsn)
		dsn.Wipe()
		switch {
		case err == nil:
			if est != nil {
				out[sp.Name] = est
			}
		case rekey.ErrorCode(err) == rekey.CodeNotFound:
			return nil, rekey.Wrap(rekey.CodeNotFound, err, "reencrypt of %s (rekey.yaml line %d): nothing was rotated", sp.Name, sp.Line)
		default:
			s.warnf("could not look up the columns of %s: %v", sp.Name, err)
		}
	}
	return out, nil
}

// estimateDataKey estimates the re-encryption of sp's columns in the
// database of dsn; without a current value of the key (nothing to open
// the rows with) it only looks the columns up, and returns no estimate.
func (s *Session) estimateDataKey(ctx context.Context, st rekey.Store, sp *rekey.Spec, vals *Values, dsn rekey.Value) (*reencrypt.Estimate, error) {
	cur, err := vals.Resolve(sp.Name)
	if err != nil {
		return nil, reencrypt.Check(ctx, dsn.RevealString(), *sp.Reencrypt)
	}
	defer cur.Wipe()
	gen := sp.Generator
	if gen.Bytes == 0 {
		gen = rekey.DataKeyGenerator
	}
	throwaway, err := gen.Generate(nil)
	if err != nil {
		return nil, err
	}
	defer throwaway.Wipe()
	stderr := s.RedactedStderr(ctx, st, cur, throwaway, dsn) // a command codec's stderr
	defer stderr.Close()
	// NoProgram: a dry run may load a rekey.yaml never approved; its
	// command codec's program is not handed the key.
	return reencrypt.EstimateRun(ctx, reencrypt.Job{DSN: dsn.RevealString(), Config: *sp.Reencrypt, Old: cur, New: throwaway, NoProgram: true,
		JobID: "estimate", Stderr: stderr})
}
