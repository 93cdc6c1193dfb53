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
	"github.com/rekeyhq/rekey/internal/verify"
)

func (a *app) verifyCommand() *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use: "verify [--environment E] [--json] [CHECK...]",
		Example: `  rekey verify
  rekey verify login db --json`,
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
command (exit 0). Each is retried (retries, backoff) within its deadline.
URLs, headers and bodies may reference secrets as {{ NAME }}: they are filled
with the current values in memory; no value is ever printed. An http check
follows no redirect (it fails naming the redirect's target host), unless
follow_redirects: same-origin lets it follow those to the same scheme, host
and port (never https to http). Command checks run without rekey's key
material in their environment; their output is shown with every stored
version of every managed value redacted.

It exits 0 when every check passes and 7 when one fails. --json prints an
array of {name, type, ok, attempts, duration_ms, message, hint}.`,
		RunE: func(cmd *cobra.Command, args []string) error { return a.runVerify(cmd.Context(), args, asJSON) },
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return c
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
	if r.OK {
		fmt.Fprintf(w, "%s  %-*s  %s\n", a.paintPadded("ok", 4), width, r.Name, counts)
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
