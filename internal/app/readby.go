package app

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/config"
)

// The audit actions that put a secret's value in a person's hands, which
// `rekey rotate --read-by` takes as evidence (issue 15, offboarding):
//
//   - "get": `rekey get` printed the value (Secret, Version).
//   - "run": `rekey run` injected the values into a command the person
//     chose (Detail "secrets: A,B; ..."): the command could print them.
//   - a rotation of mode "set" (`rekey set`, audited as rotate.create with
//     Detail "rotation ID (set)") and "import" (`rekey init` importing a
//     .env): the person supplied the value, so they know it.
//
// Not evidence: "verify", "services.status", "services.restart",
// "reencrypt.verify" and "reencrypt.rehearse" hand the values to the checks
// and commands of the approved rekey.yaml, whose output rekey redacts;
// "publish" and the rotation steps write the .env (a file, whose readers
// are not the actor); "rotate.create" of any other mode generates a value
// no person sees.
const (
	evidenceRead     = "read"
	evidenceInjected = "injected"
	evidenceSupplied = "supplied"
)

// ReadEvidence is what the audit log says an actor did with one secret.
type ReadEvidence struct {
	Secret string `json:"secret"`
	// Reads are `rekey get`s; LastReadVersion the version the last printed.
	Reads           int       `json:"reads"`
	LastRead        time.Time `json:"last_read,omitzero"`
	LastReadVersion int       `json:"last_read_version,omitempty"`
	// Injections are `rekey run`s whose command received the value.
	Injections   int       `json:"injections"`
	LastInjected time.Time `json:"last_injected,omitzero"`
	// Supplied are values the actor gave (`rekey set`, `rekey init`'s import).
	Supplied     int       `json:"supplied"`
	LastSupplied time.Time `json:"last_supplied,omitzero"`
	// UserManaged: rekey cannot rotate it; the actor's replacement is made
	// at the provider and recorded with `rekey set`.
	UserManaged bool `json:"user_managed,omitempty"`
}

// Summary is the evidence in one line, e.g. "read by alice 3 times, last
// 2026-11-30 (get v4); injected by `rekey run` 2 times, last 2026-11-29".
func (e ReadEvidence) Summary(actor string) string {
	var parts []string
	day := func(t time.Time) string { return t.UTC().Format("2006-01-02") }
	if e.Reads > 0 {
		parts = append(parts, fmt.Sprintf("read by %s %s, last %s (get v%d)", actor, times(e.Reads), day(e.LastRead), e.LastReadVersion))
	}
	if e.Injections > 0 {
		parts = append(parts, fmt.Sprintf("injected by `rekey run` %s, last %s", times(e.Injections), day(e.LastInjected)))
	}
	if e.Supplied > 0 {
		parts = append(parts, fmt.Sprintf("value supplied by %s (set or import) %s, last %s", actor, times(e.Supplied), day(e.LastSupplied)))
	}
	return strings.Join(parts, "; ")
}

func times(n int) string {
	if n == 1 {
		return "once"
	}
	return fmt.Sprintf("%d times", n)
}

// ReadBy is the evidence of what one actor read in the session's
// environment (`rekey rotate --read-by`).
type ReadBy struct {
	Actor       string `json:"actor"`
	Environment string `json:"environment"`
	// Since bounds the evidence; zero: the whole audit log.
	Since time.Time `json:"since,omitzero"`
	// Checked is the number of audit entries whose hash chain was verified.
	Checked int `json:"audit_entries_verified"`
	// Evidence is one per secret the actor read, in rekey.yaml order.
	Evidence []ReadEvidence `json:"evidence"`
	// Gone are secrets the actor read that rekey.yaml no longer declares.
	Gone []string `json:"no_longer_declared,omitempty"`
	// Actors are every actor of the audit log, when Actor is none of them
	// (a typo, or a name given as user@host: actors are REKEY_ACTOR or the
	// login name, exactly as `rekey audit` lists them).
	Actors []string `json:"known_actors,omitempty"`
}

// Rotatable are the secrets rekey can rotate (user-managed ones are not).
func (r *ReadBy) Rotatable() []string {
	var out []string
	for _, e := range r.Evidence {
		if !e.UserManaged {
			out = append(out, e.Secret)
		}
	}
	return out
}

// UserManaged are the secrets read that only their provider can replace.
func (r *ReadBy) UserManaged() []string {
	var out []string
	for _, e := range r.Evidence {
		if e.UserManaged {
			out = append(out, e.Secret)
		}
	}
	return out
}

// Nothing is the sentence for an actor who read nothing.
func (r *ReadBy) Nothing() string {
	when := "in the whole audit log"
	if !r.Since.IsZero() {
		when = "since " + r.Since.UTC().Format(time.RFC3339)
	}
	return fmt.Sprintf("%s read no secret of environment %s %s; nothing to rotate", r.Actor, r.Environment, when)
}

// ParseSince reads --since: an RFC 3339 time, a date (2026-01-31, UTC
// midnight), or a duration back from now (90d, 12h).
func ParseSince(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t, nil
	}
	d, err := rekey.ParseDuration(s)
	if err != nil || d <= 0 {
		return time.Time{}, rekey.Errorf(rekey.CodeInvalid, "--since: not a date nor a duration").
			WithHint("use an RFC 3339 date (2026-09-01 or 2026-09-01T00:00:00Z) or a duration back from now (90d, 2w, 12h)")
	}
	return now.Add(-d), nil
}

// ReadBy gathers, from the audit log of the session's environment, every
// secret actor read, had injected or supplied since since (zero: ever).
// The log is evidence only if its hash chain holds: a broken chain is
// refused (someone who can write the project folder could otherwise add
// or remove reads). The actor is matched exactly.
func (s *Session) ReadBy(ctx context.Context, actor string, since time.Time) (*ReadBy, error) {
	if strings.TrimSpace(actor) == "" {
		return nil, rekey.Errorf(rekey.CodeInvalid, "--read-by: no actor named").WithHint("name the actor as `rekey audit` lists it (REKEY_ACTOR, else the login name)")
	}
	cfg, st, env, err := s.openEnv(ctx)
	if err != nil {
		return nil, err
	}
	entries, n, err := verifiedAudit(ctx, st, "--read-by", "; restore .rekey/rekey.db from a backup you trust, or rotate every secret (`rekey rotate --all`)")
	if err != nil {
		return nil, err
	}
	out := &ReadBy{Actor: actor, Environment: env.Name, Since: since, Checked: n, Evidence: []ReadEvidence{}}
	collectEvidence(out, cfg, entries)
	return out, nil
}

// collectEvidence fills r from the entries of the log (all environments,
// oldest first).
func collectEvidence(r *ReadBy, cfg *config.Config, entries []rekey.AuditEntry) {
	by := map[string]*ReadEvidence{}
	known := false
	actors := map[string]bool{}
	for _, e := range entries {
		actors[e.Actor] = true
		if e.Actor != r.Actor {
			continue
		}
		known = true
		if e.Env != r.Environment || (!r.Since.IsZero() && e.Time.Before(r.Since)) {
			continue
		}
		kind, names := evidenceOf(e)
		for _, n := range names {
			ev := by[n]
			if ev == nil {
				ev = &ReadEvidence{Secret: n}
				by[n] = ev
			}
			switch kind {
			case evidenceRead:
				ev.Reads++
				ev.LastRead, ev.LastReadVersion = e.Time, e.Version
			case evidenceInjected:
				ev.Injections++
				ev.LastInjected = e.Time
			case evidenceSupplied:
				ev.Supplied++
				ev.LastSupplied = e.Time
			}
		}
	}
	for _, sp := range cfg.Secrets {
		if ev := by[sp.Name]; ev != nil {
			ev.UserManaged = sp.Kind == rekey.KindManual
			r.Evidence = append(r.Evidence, *ev)
			delete(by, sp.Name)
		}
	}
	for n := range by {
		r.Gone = append(r.Gone, n)
	}
	slices.Sort(r.Gone)
	if !known {
		for a := range actors {
			r.Actors = append(r.Actors, a)
		}
		slices.Sort(r.Actors)
	}
}

// evidenceOf says whether e put values in its actor's hands, and whose.
func evidenceOf(e rekey.AuditEntry) (string, []string) {
	if e.Outcome != "ok" {
		return "", nil
	}
	switch {
	case e.Action == "get" && e.Secret != "":
		return evidenceRead, []string{e.Secret}
	case e.Action == "run":
		list, _, _ := strings.Cut(e.Detail, ";")
		list, ok := strings.CutPrefix(list, "secrets: ")
		if !ok {
			return "", nil
		}
		var names []string
		for _, n := range strings.Split(list, ",") {
			if n = strings.TrimSpace(n); n != "" {
				names = append(names, n)
			}
		}
		return evidenceInjected, names
	case e.Action == "import" && e.Secret != "",
		e.Action == "rotate.create" && e.Secret != "" && strings.HasSuffix(e.Detail, "("+string(rekey.ModeSet)+")"):
		return evidenceSupplied, []string{e.Secret}
	}
	return "", nil
}

// AuditReadBy records, before the rotation, that its secrets were chosen
// by rb's evidence (action "rotate.read-by", outcome "started": the actor,
// the window, the secrets; no value). The rotation's own entries follow.
func (s *Session) AuditReadBy(ctx context.Context, rb *ReadBy) error {
	_, st, err := s.OpenStore(ctx)
	if err != nil {
		return err
	}
	since := "the whole log"
	if !rb.Since.IsZero() {
		since = rb.Since.UTC().Format(time.RFC3339)
	}
	detail := fmt.Sprintf("offboarding %s (evidence since %s): rotating %s", rb.Actor, since, strings.Join(rb.Rotatable(), ","))
	return s.Audit(ctx, st, rekey.AuditEntry{Action: "rotate.read-by", Env: rb.Environment, Outcome: "started", Detail: detail})
}

// verifiedAudit is the whole audit log, read only after its hash chain
// verified (n entries): the evidence of who read what. what names the
// command in the error; more extends its hint.
func verifiedAudit(ctx context.Context, st rekey.Store, what, more string) (entries []rekey.AuditEntry, n int, err error) {
	if n, err = st.VerifyAudit(ctx); err != nil {
		return nil, 0, rekey.Wrap(rekey.CodeAuth, err, "%s: the audit log is no evidence: its hash chain is broken", what).
			WithHint("`rekey audit verify` names the first entry changed, removed or reordered%s", more)
	}
	err = st.View(ctx, func(tx rekey.Tx) error {
		entries, err = tx.AuditLog(rekey.AuditFilter{})
		return err
	})
	return entries, n, err
}
