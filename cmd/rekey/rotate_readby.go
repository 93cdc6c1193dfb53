package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/rekeyhq/rekey"
	rkapp "github.com/rekeyhq/rekey/internal/app"
	"github.com/rekeyhq/rekey/internal/textsafe"
)

// readByFlags are rotate's --read-by and --since.
type readByFlags struct{ actor, since string }

// runRotateReadBy is `rekey rotate --read-by ACTOR [--since DATE]`
// (offboarding): the secrets the audit log shows ACTOR read, injected or
// supplied, with the evidence, rotated as one rotation of them by name.
func (a *app) runRotateReadBy(ctx context.Context, o rkapp.RotateRequest, f readByFlags) error {
	switch {
	case f.actor == "" && f.since != "":
		return rekey.Errorf(rekey.CodeInvalid, "--since needs --read-by").WithHint("`rekey rotate --read-by ACTOR --since 90d`; `rekey audit --since 90d` lists the log")
	case len(o.Names) > 0 || o.Due || o.All:
		return rekey.Errorf(rekey.CodeInvalid, "--read-by picks the secrets itself: name none, and pass neither --due nor --all").
			WithHint("`rekey rotate --read-by %s --dry-run` shows which", textsafe.Quote(f.actor))
	}
	since, err := rkapp.ParseSince(f.since, a.now())
	if err != nil {
		return err
	}
	a.s().ReadOnly = o.DryRun // as PlanRotation: a plan of named secrets only prints
	rb, err := a.s().ReadBy(ctx, f.actor, since)
	if err != nil {
		return err
	}
	if len(rb.Actors) > 0 {
		a.warnf("no entry of the audit log names the actor %s; its actors are: %s (REKEY_ACTOR, else the login name, as `rekey audit` lists them)", textsafe.Quote(rb.Actor), quoteAll(rb.Actors))
	}
	for _, g := range rb.Gone {
		a.warnf("%s read %s, which rekey.yaml no longer declares: revoke it where it is still used", textsafe.Quote(rb.Actor), textsafe.Quote(g))
	}
	if !a.jsonOut {
		a.printEvidence(rb)
	}
	if manual := rb.UserManaged(); len(manual) > 0 {
		for _, n := range manual {
			a.warnf("%s read %s, which is user-managed: revoke and reissue it at its provider, then record the new value: `rekey set %s` (value on stdin)", textsafe.Quote(rb.Actor), n, n)
		}
	}
	o.Names = rb.Rotatable()
	if len(o.Names) == 0 {
		if a.jsonOut {
			mode := rekey.ModeManual
			if o.Emergency {
				mode = rekey.ModeEmergency
			}
			return a.printJSON(withReadBy(&rotationJSON{Environment: rb.Environment, Mode: string(mode), Outcome: "nothing", Secrets: []rotatedSecretJSON{}}, rb))
		}
		if len(rb.Evidence) == 0 {
			fmt.Fprintln(a.out(), rb.Nothing())
		} else {
			fmt.Fprintln(a.out(), "nothing rekey can rotate: the keys read are user-managed (see above)")
		}
		return nil
	}
	if !o.DryRun {
		if err := a.s().AuditReadBy(ctx, rb); err != nil {
			return err
		}
	}
	return a.runRotate(ctx, o, rb)
}

// printEvidence prints what the audit log shows, one line per secret.
func (a *app) printEvidence(rb *rkapp.ReadBy) {
	if len(rb.Evidence) == 0 {
		return
	}
	when := "the whole audit log"
	if !rb.Since.IsZero() {
		when = "the audit log since " + rb.Since.UTC().Format(time.RFC3339)
	}
	fmt.Fprintf(a.out(), "evidence: %s (hash chain verified, %d entries), environment %s:\n", when, rb.Checked, rb.Environment)
	for _, e := range rb.Evidence {
		line := fmt.Sprintf("  %s: %s", e.Secret, e.Summary(textsafe.Quote(rb.Actor)))
		if e.UserManaged {
			line += " (user-managed: rotate it at its provider)"
		}
		fmt.Fprintln(a.out(), line)
	}
}

// readByJSON is a rotation's JSON with the evidence that chose its secrets.
type readByJSON struct {
	*rotationJSON
	ReadBy *rkapp.ReadBy `json:"read_by,omitempty"`
}

// withReadBy adds rb (when not nil) to a rotation's JSON.
func withReadBy(v *rotationJSON, rb *rkapp.ReadBy) any {
	if rb == nil {
		return v
	}
	return readByJSON{v, rb}
}

func quoteAll(ss []string) string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = textsafe.Quote(s)
	}
	return strings.Join(out, ", ")
}
