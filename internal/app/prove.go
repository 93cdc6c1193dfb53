package app

// This file proves that an exposed value is dead (issue 15): the
// consumers rekey can reach refuse it and accept the current one. It is
// what `rekey verify --dead NAME` runs, and what an incident's "prove the
// old values are dead" step records.

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/config"
	"github.com/rekeyhq/rekey/internal/postgres"
	"github.com/rekeyhq/rekey/internal/verify"
)

// Verdicts of a Proof.
const (
	ProofDead         = "dead"         // refused, and the current value accepted (the control)
	ProofAlive        = "alive"        // the exposed value still works
	ProofInconclusive = "inconclusive" // could not tell (unreachable, or the current value refused too)
	ProofManual       = "manual"       // nothing rekey can present it to: a person must check
)

// Proof is one test of an exposed version against a consumer. It holds no
// value: versions by number, consumers by name.
type Proof struct {
	Secret  string `json:"secret"`
	Version int    `json:"version"` // the version tested
	Current int    `json:"current"` // the version of the control
	Method  string `json:"method"`  // "postgres login", "check NAME", "none"
	Verdict string `json:"verdict"`
	Detail  string `json:"detail"`
	Hint    string `json:"hint,omitempty"`
}

// Dead says whether every proof found the exposed value dead (manual ones
// do not count against it: they are a person's follow-up).
func Dead(ps []Proof) bool {
	for _, p := range ps {
		if p.Verdict == ProofAlive || p.Verdict == ProofInconclusive {
			return false
		}
	}
	return true
}

// ProveDead tests, for each secret of names, an exposed version (version,
// or when 0 the newest version marked exposed that is not current, else
// the one before current) against every consumer rekey can present it to:
// the PostgreSQL server of a password (a login with it must be refused,
// one with the current password accepted), and each http check that
// presents {{ NAME | jwt }} (a token signed with it must get 401 or 403,
// one signed with the current value pass the check). The reads are
// audited (verify.dead).
func (s *Session) ProveDead(ctx context.Context, names []string, version int) ([]Proof, error) {
	cfg, st, env, err := s.openEnv(ctx)
	if err != nil {
		return nil, err
	}
	vals, err := s.readValues(ctx, st, cfg, env.Name, "verify.dead", "secrets: "+strings.Join(names, ","))
	if err != nil {
		return nil, err
	}
	defer vals.Wipe()
	var out []Proof
	for _, name := range names {
		spec, ok := cfg.Secret(name)
		if !ok {
			return out, rekey.Errorf(rekey.CodeNotFound, "no secret %s in rekey.yaml", name).WithHint("`rekey status` lists them")
		}
		old, cur, err := exposedPair(ctx, st, env.Name, name, version)
		if err != nil {
			return out, err
		}
		ps := s.proveOne(ctx, cfg, env, spec, old, cur, vals)
		old.Value.Wipe()
		cur.Value.Wipe()
		out = append(out, ps...)
	}
	return out, nil
}

// exposedPair reads the version to test (see ProveDead) and the current one.
func exposedPair(ctx context.Context, st rekey.Store, env, name string, n int) (old, cur rekey.VersionValue, err error) {
	err = st.View(ctx, func(tx rekey.Tx) error {
		c, err := tx.Labeled(env, name, rekey.LabelCurrent)
		if err != nil {
			return err
		}
		vs, err := tx.Versions(env, name)
		if err != nil {
			return err
		}
		var o *rekey.Version
		for i := range vs {
			v := &vs[i]
			switch {
			case n > 0 && v.N == n:
				o = v
			case n == 0 && v.N != c.N && v.Attrs[rekey.AttrExposed] != "":
				o = v // the newest exposed one wins (oldest first)
			case n == 0 && v.N < c.N && (o == nil || o.Attrs[rekey.AttrExposed] == "" && v.N > o.N):
				o = v
			}
		}
		switch {
		case o == nil && n > 0:
			return rekey.Errorf(rekey.CodeNotFound, "%s has no version %d", name, n).WithHint("`rekey history %s` lists its versions", name)
		case o == nil:
			return rekey.Errorf(rekey.CodeNotFound, "%s has no version before the current one (v%d)", name, c.N).WithHint("nothing was exposed and replaced yet")
		case o.N == c.N:
			return rekey.Errorf(rekey.CodeInvalid, "v%d is %s's current version: rotate it first", n, name).
				WithHint("rekey rotate %s --emergency", name)
		}
		if old.Value, err = tx.Value(env, name, o.N); err != nil {
			return err
		}
		old.Version = *o
		cur.Version = c
		cur.Value, err = tx.Value(env, name, c.N)
		return err
	})
	return old, cur, err
}

func (s *Session) proveOne(ctx context.Context, cfg *config.Config, env *config.Environment, spec *rekey.Spec, old, cur rekey.VersionValue, vals *Values) []Proof {
	base := Proof{Secret: spec.Name, Version: old.N, Current: cur.N}
	var out []Proof
	if spec.Postgres != nil {
		out = append(out, s.provePostgres(ctx, cfg, env, spec, old, cur, base))
	}
	for _, c := range cfg.ChecksFor(env.Name) {
		if presents(c, spec.Name) {
			out = append(out, s.proveCheck(ctx, cfg, c, spec.Name, old, cur, vals, base))
		}
	}
	if len(out) == 0 {
		p := base
		p.Method, p.Verdict = "none", ProofManual
		p.Detail = "rekey has nothing to present it to"
		p.Hint = fmt.Sprintf("for a JWT secret, an http check with the header Authorization: Bearer {{ %s | jwt }} proves it; a provider's key is proved dead at the provider (rotate it there, then `rekey set %s`)", spec.Name, spec.Name)
		out = append(out, p)
	}
	return out
}

// presents says whether c presents name to a consumer that can refuse it:
// an http check presenting a token signed with it ({{ name | jwt }} in its
// URL, a header or its body), or a command check reading it on its stdin
// (a provider's key tested at the provider).
func presents(c rekey.Check, name string) bool {
	if c.Command != nil {
		return c.Stdin == name
	}
	h := c.HTTP
	if h == nil {
		return false
	}
	ts := []*rekey.Template{h.URL, h.Body}
	for _, hd := range h.Headers {
		ts = append(ts, hd.Value)
	}
	for _, t := range ts {
		if t != nil && t.UsesOn(name, rekey.JWTFilter) {
			return true
		}
	}
	return false
}

// provePostgres logs in with the exposed password (refused: dead) and with
// the current one (the control).
func (s *Session) provePostgres(ctx context.Context, cfg *config.Config, env *config.Environment, spec *rekey.Spec, old, cur rekey.VersionValue, p Proof) Proof {
	p.Method = "postgres login"
	ap, _ := s.PostgresApplier(cfg, env).(*postgres.Applier)
	login := func(v rekey.VersionValue) (role string, ok bool, err error) {
		v.Value = rekey.NewValue(v.Value.Reveal()) // a copy: the password is cleared after
		params, err := ap.ParamsFor(ctx, spec, v)
		if err != nil {
			return "", false, err
		}
		defer clear(params.Password)
		ok, err = postgres.TryLogin(ctx, params)
		var pe *postgres.Error
		if err != nil && errors.As(err, &pe) && pe.SQLState == "28000" {
			return params.User, false, nil // the role may not log in (an emergency disabled it)
		}
		return params.User, ok, err
	}
	role, ok, err := login(old)
	switch {
	case err != nil:
		p.Verdict, p.Detail = ProofInconclusive, fmt.Sprintf("logging in with v%d's password: %v", old.N, err)
		p.Hint = "run again once the server is reachable: `rekey verify --dead " + spec.Name + "`"
		return p
	case ok:
		p.Verdict, p.Detail = ProofAlive, fmt.Sprintf("the server still accepts v%d's password for role %s", old.N, role)
		p.Hint = "rotate it again (`rekey rotate " + spec.Name + " --emergency`); if it still logs in, the server does not check this role's password (a trust or peer line in pg_hba.conf?)"
		return p
	}
	crole, cok, err := login(cur)
	if err != nil || !cok {
		p.Verdict = ProofInconclusive
		p.Detail = fmt.Sprintf("the server refused v%d's password for role %s, but the current v%d does not log in either (%v)", old.N, role, cur.N, err)
		p.Hint = "`rekey verify` and `rekey status` show what is wrong with the current password"
		return p
	}
	p.Verdict = ProofDead
	p.Detail = fmt.Sprintf("the server refused v%d's password for role %s and accepted v%d's for role %s", old.N, role, cur.N, crole)
	return p
}

// proveCheck runs check c with name's current value (the control: it must
// pass as configured), then with the exposed value: an http check expecting
// 401 or 403, and when that fails once more as configured (passing: the
// value is alive); a command check once (proveCommand).
func (s *Session) proveCheck(ctx context.Context, cfg *config.Config, c rekey.Check, name string, old, cur rekey.VersionValue, vals *Values, p Proof) Proof {
	p.Method = "check " + c.Name
	opts := verify.Options{Dir: cfg.Dir, Env: s.Environ(), Redact: vals.Redact, Postgres: postgres.URLDialer{}}
	with := func(v rekey.Value) verify.Resolver {
		return func(n string) (rekey.Value, error) {
			if n == name {
				return rekey.NewValue(v.Reveal()), nil
			}
			return vals.Resolve(n)
		}
	}
	control := verify.RunOne(ctx, c, with(cur.Value), opts)
	if !control.OK {
		p.Verdict = ProofInconclusive
		p.Detail = fmt.Sprintf("with the current v%d the check fails too: %s", cur.N, control.Message)
		p.Hint = "make `rekey verify " + c.Name + "` pass (is the application up and restarted?), then `rekey verify --dead " + name + "`"
		return p
	}
	// The control passed: the application is up, so the exposed value's
	// runs make one attempt each (a retry would wait out the check's
	// backoff for an answer that will not change).
	once := c
	once.Retries = 0
	if c.Command != nil {
		return proveCommand(ctx, once, name, old, cur, with(old.Value), opts, p)
	}
	refused := once
	h := *c.HTTP
	h.Expect = []int{401, 403}
	refused.HTTP = &h
	if r := verify.RunOne(ctx, refused, with(old.Value), opts); r.OK {
		p.Verdict = ProofDead
		p.Detail = fmt.Sprintf("refused a token signed with v%d (401 or 403) and accepted one signed with v%d", old.N, cur.N)
		return p
	}
	r := verify.RunOne(ctx, once, with(old.Value), opts)
	if r.OK {
		p.Verdict = ProofAlive
		p.Detail = fmt.Sprintf("accepted a token signed with v%d: the application still trusts the exposed value", old.N)
		p.Hint = "restart the services that verify tokens (is " + name + "_PREVIOUS still in their environment?), then `rekey verify --dead " + name + "`"
		return p
	}
	p.Verdict = ProofInconclusive
	p.Detail = fmt.Sprintf("a token signed with v%d got neither 401/403 nor the check's success: %s", old.N, r.Message)
	return p
}

// proveCommand runs command check c (its control passed) once with the
// exposed value on its stdin: failing, the consumer refuses the old value
// (dead); passing, it still accepts it (alive).
func proveCommand(ctx context.Context, c rekey.Check, name string, old, cur rekey.VersionValue, withOld verify.Resolver, opts verify.Options, p Proof) Proof {
	r := verify.RunOne(ctx, c, withOld, opts)
	if r.OK {
		p.Verdict = ProofAlive
		p.Detail = fmt.Sprintf("the check passes with v%d on its stdin: the consumer still accepts the exposed value", old.N)
		p.Hint = "revoke v" + fmt.Sprint(old.N) + " at the provider (a new key alone does not revoke the old one), then `rekey verify --dead " + name + "`"
		return p
	}
	p.Verdict = ProofDead
	p.Detail = fmt.Sprintf("the check fails with v%d on its stdin (%s) and passes with v%d", old.N, r.Message, cur.N)
	return p
}

// RecordProofs adds ps (from ProveDead) to each open incident of the
// session's environment that exposed the version proved: one prove-dead
// event per proof that tested something (not manual). When every such
// proof of a user-managed key is dead, the incident's follow-up
// provider:NAME is marked done: the old key was proved dead at its
// provider. It returns one line per incident changed (no value).
func (s *Session) RecordProofs(ctx context.Context, ps []Proof) ([]string, error) {
	cfg, st, env, err := s.openEnv(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	err = st.Update(ctx, func(tx rekey.Tx) error {
		incs, err := tx.Incidents(env.Name, true)
		if err != nil {
			return err
		}
		for _, inc := range incs {
			if changed := s.recordProofs(cfg, inc, ps); changed != "" {
				if err := tx.PutIncident(inc); err != nil {
					return err
				}
				if _, err := tx.Audit(rekey.AuditEntry{Actor: s.Actor(), Action: "incident.proof", Env: inc.Env, Outcome: "ok", Detail: "incident " + inc.ID + ": " + changed}); err != nil {
					return err
				}
				out = append(out, "incident "+inc.ID+": "+changed)
			}
		}
		return nil
	})
	return out, err
}

// recordProofs adds to inc the proofs of its exposed versions and marks
// provider:NAME done for a user-managed key proved dead; it says what
// changed ("" nothing).
func (s *Session) recordProofs(cfg *config.Config, inc *rekey.Incident, ps []Proof) string {
	var did []string
	now := s.Now().UTC()
	for _, sec := range inc.Secrets {
		tested, dead := 0, true
		for _, p := range ps {
			if p.Secret != sec.Name || p.Version != sec.ExposedVersion || p.Verdict == ProofManual {
				continue
			}
			tested++
			dead = dead && p.Verdict == ProofDead
			outcome := rekey.OutcomeOK
			if p.Verdict != ProofDead {
				outcome = rekey.OutcomeFailed
			}
			inc.Timeline = append(inc.Timeline, rekey.IncidentEvent{At: now, Action: rekey.ActionProveDead, Secret: p.Secret, Outcome: outcome,
				Detail: fmt.Sprintf("%s (v%d, %s): %s", p.Verdict, p.Version, p.Method, p.Detail)})
		}
		if tested == 0 {
			continue
		}
		did = append(did, fmt.Sprintf("%d proofs of %s v%d recorded", tested, sec.Name, sec.ExposedVersion))
		sp, ok := cfg.Secret(sec.Name)
		if !ok || sp.Kind != rekey.KindManual || !dead {
			continue
		}
		for i := range inc.FollowUps {
			if f := &inc.FollowUps[i]; f.Key == rekey.FollowUpProvider+sec.Name && !f.Done {
				s.markFollowUp(inc, f, fmt.Sprintf("v%d proved dead at the provider (rekey verify --dead)", sec.ExposedVersion))
				did = append(did, "follow-up "+f.Key+" done")
			}
		}
	}
	return strings.Join(did, "; ")
}
