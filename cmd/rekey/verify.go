package main

import (
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/rekeyhq/rekey"
	rkapp "github.com/rekeyhq/rekey/internal/app"
	"github.com/rekeyhq/rekey/internal/verify"
)

func (a *app) verifyCommand() *cobra.Command {
	var asJSON bool
	var dead []string
	var version int
	c := &cobra.Command{
		Use: "verify [--environment E] [--json] [CHECK... | --dead NAME... [--version N]]",
		Example: `  rekey verify
  rekey verify login db --json
  rekey verify --dead JWT_SECRET --dead DATABASE_PASSWORD`,
		Short: "Run the checks of rekey.yaml: login works, the database accepts the password, data decrypts",
		Long: `verify runs the checks listed under checks: in rekey.yaml (all of the
environment's, or those named) — the runbook's "test the application" step —
and prints one line per check as it completes:

  ok    login  (2 attempts, 120ms)
  FAIL  db     log in with DATABASE_URL: ...: password authentication failed (3 attempts, 4.1s)
              hint: ...

Check types: http (method, url, headers, body, expect, json_field), tcp
(address), postgres (url: the secret or derived value holding the connection
URL; logs in and runs SELECT 1), sql (url, query, expect; read-only),
decrypt-sample (url, column: table.col, rows, key, codec, encoding) and
command (exit 0; stdin: NAME gives it that secret on its standard input,
never in argv or its environment) and log (file: PATH, journal: UNIT or
command: [...], watched for window (30s): in a rotation from where the file
or the journal stood when the restart began, in rekey verify from now; the
first lines matching pattern (panic|FATAL|ERROR) fail it, quoted redacted;
one attempt). Each is retried (retries, backoff) within its deadline.
URLs, headers and bodies may reference secrets as {{ NAME }}: they are filled
with the current values in memory; no value is ever printed. An http check
follows no redirect (it fails naming the redirect's target host), unless
follow_redirects: same-origin lets it follow those to the same scheme, host
and port (never https to http). Command checks run without rekey's key
material in their environment; their output is shown with every stored
version of every managed value redacted.

It exits 0 when every check passes and 7 when one fails. --json prints an
array of {name, type, ok, attempts, duration_ms, message, hint}.

--dead NAME proves that an exposed value of NAME is dead: the version given
by --version, else the newest one marked exposed (an emergency rotation
marks the version it replaces), else the one before the current. It is
presented to every consumer rekey can reach, with the current value as the
control: a PostgreSQL password logs in (refused: dead; the current one must
log in), and each http check whose URL, header or body holds
{{ NAME | jwt }} (a token signed with the value) runs with a token of the
exposed version, expecting 401 or 403, and with one of the current version,
expecting the check to pass; each command check with stdin: NAME (a
provider's key tested at the provider) must pass with the current value
and fail with the exposed one. One line per proof: dead, alive,
inconclusive (unreachable, or the current value refused too) or manual
(nothing to present it to). The proofs of a version an open incident
exposed are added to its timeline; a user-managed key proved dead there
completes its follow-up provider:NAME. It exits 0 when no proof is alive or
inconclusive, else 7. --json prints an array of {secret, version, current,
method, verdict, detail, hint}.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(dead) > 0 {
				if len(args) > 0 {
					return rekey.Errorf(rekey.CodeInvalid, "--dead proves values dead; CHECK names run checks").WithHint("run them apart: rekey verify --dead %s", dead[0])
				}
				return a.runProveDead(cmd.Context(), dead, version, asJSON)
			}
			if version != 0 {
				return rekey.Errorf(rekey.CodeInvalid, "--version is for --dead").WithHint("rekey verify --dead NAME --version N")
			}
			return a.runVerify(cmd.Context(), args, asJSON)
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	c.Flags().StringArrayVar(&dead, "dead", nil, "prove an exposed value of this secret is dead (repeatable)")
	c.Flags().IntVar(&version, "version", 0, "with --dead: the version to prove dead (default: the newest exposed one, else the one before current)")
	return c
}

// runProveDead prints one line per proof (or JSON) and fails (exit 7) when
// one is alive or inconclusive.
func (a *app) runProveDead(ctx context.Context, names []string, version int, asJSON bool) error {
	ps, err := a.s().ProveDead(ctx, names, version)
	if err != nil {
		return err
	}
	if asJSON {
		if err := a.printJSON(ps); err != nil {
			return err
		}
	} else {
		for _, p := range ps {
			fmt.Fprintf(a.out(), "%s  %s v%d  %s: %s\n", a.paintPadded(p.Verdict, 12), p.Secret, p.Version, p.Method, p.Detail)
			if p.Hint != "" {
				fmt.Fprintf(a.out(), "%14s hint: %s\n", "", p.Hint)
			}
		}
	}
	// The proofs of an open incident's exposed versions go to its timeline.
	recorded, err := a.s().RecordProofs(ctx, ps)
	if err != nil {
		return err
	}
	for _, line := range recorded {
		a.narrate("%s", line)
	}
	if rkapp.Dead(ps) {
		return nil
	}
	return rekey.Errorf(rekey.CodeVerifyFailed, "an exposed value is not proved dead").WithHint("each line above says what to do")
}

func (a *app) runVerify(ctx context.Context, names []string, asJSON bool) error {
	checks, err := a.s().SelectChecks(names)
	if err != nil {
		return err
	}
	w := 0
	for _, c := range checks {
		w = max(w, len(c.Name))
	}
	return printResults(a, asJSON, func(r verify.Result) { a.printCheck(r, w) },
		func(onResult func(verify.Result)) ([]verify.Result, error) {
			_, results, err := a.s().Verify(ctx, names, onResult)
			return results, err
		})
}

// printResults runs a command whose results come one at a time (run
// passes each to its onResult): they are printed as they come with line,
// or, with asJSON, all together as JSON at the end, also when the command
// failed part way. It returns the command's error.
func printResults[R any](a *app, asJSON bool, line func(R), run func(onResult func(R)) ([]R, error)) error {
	var onResult func(R)
	if !asJSON {
		onResult = line
	}
	res, err := run(onResult)
	if asJSON && res != nil {
		if jerr := a.printJSON(res); jerr != nil {
			return jerr
		}
	}
	return err
}

// printCheck prints one result line: status, name, message and counts, then
// the hint of a failure on a line of its own.
func (a *app) printCheck(r verify.Result, width int) {
	w := a.out()
	attempts := fmt.Sprintf("%d attempts", r.Attempts)
	if r.Attempts == 1 {
		attempts = "1 attempt"
	}
	counts := "(" + attempts + ", " + shortDuration(r.Duration) + ")"
	if r.OK && r.Hint == "" {
		fmt.Fprintf(w, "%s  %-*s  %s\n", a.paintPadded("ok", 4), width, r.Name, counts)
		return
	}
	if r.OK { // passed, with something still to do: say what
		fmt.Fprintf(w, "%s  %-*s  %s %s\n", a.paintPadded("ok", 4), width, r.Name, r.Message, counts)
		fmt.Fprintf(w, "      %-*s  note: %s\n", width, "", r.Hint)
		return
	}
	fmt.Fprintf(w, "%s  %-*s  %s %s\n", a.paint("FAIL"), width, r.Name, r.Message, counts)
	if r.Hint != "" {
		fmt.Fprintf(w, "      %-*s  hint: %s\n", width, "", r.Hint)
	}
}

// shortDuration is 120ms under a second, 4.1s above.
func shortDuration(d time.Duration) string {
	if d < time.Second {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(100 * time.Millisecond).String()
}

// environ is the environment of commands rekey runs (services, checks,
// hooks, run's command, codecs): rekey's own, with Main.Env applied (a
// variable mapped to "" is removed), without rekey's key material
// (rekey.ChildEnv: REKEY_MASTER_KEY, REKEY_PASSPHRASE, REKEY_NEW_*, ...).
// It holds no managed value rekey put there.
func (a *app) environ() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if _, ok := a.m.Env[k]; !ok {
			env = append(env, kv)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(a.m.Env)) {
		if v := a.m.Env[k]; v != "" {
			env = append(env, k+"="+v)
		}
	}
	return rekey.ChildEnv(env)
}
