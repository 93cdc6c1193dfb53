package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/config"
	"github.com/rekeyhq/rekey/internal/reencrypt"
	"github.com/rekeyhq/rekey/internal/verify"
	"github.com/spf13/cobra"
)

func (a *app) verifyCommand() *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "verify [--environment E] [--json] [CHECK...]",
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

const checksExample = "add checks to rekey.yaml, e.g.\n  checks:\n    health:\n      http: {url: \"http://localhost:8080/health\"}"

func (a *app) runVerify(ctx context.Context, names []string, asJSON bool) error {
	cfg, st, err := a.openStore(ctx)
	if err != nil {
		return err
	}
	env, err := a.environment(cfg)
	if err != nil {
		return err
	}
	checks, err := selectChecks(cfg, env.Name, names)
	if err != nil {
		return err
	}
	checkNames := make([]string, len(checks))
	for i, c := range checks {
		checkNames[i] = c.Name
	}
	vals, err := a.currentValues(ctx, st, cfg, env.Name, "verify", "checks: "+strings.Join(checkNames, ","))
	if err != nil {
		return err
	}
	defer vals.wipe()

	opts := verify.Options{Dir: cfg.Dir, Env: a.environ(), Redact: vals.redact, Opener: a.opener()}
	if !asJSON {
		w := 0
		for _, c := range checks {
			w = max(w, len(c.Name))
		}
		opts.OnResult = func(r verify.Result) { printCheck(a.out(), r, w) }
	}
	results := verify.Run(ctx, checks, vals.resolve, opts)
	if asJSON {
		enc := json.NewEncoder(a.out())
		enc.SetIndent("", "  ")
		if err := enc.Encode(results); err != nil {
			return err
		}
	}
	verr := verify.Error(results)
	outcome, detail := "ok", fmt.Sprintf("%d checks passed", len(results))
	if verr != nil {
		outcome, detail = "failed", verr.Error()
	}
	if err := a.audit(ctx, st, rekey.AuditEntry{Action: "verify", Env: env.Name, Outcome: outcome, Detail: detail}); err != nil {
		return err
	}
	return verr
}

// selectChecks returns the environment's checks, or those named.
func selectChecks(cfg *config.Config, env string, names []string) ([]config.Check, error) {
	all := cfg.ChecksFor(env)
	if len(all) == 0 {
		if len(cfg.Checks) > 0 {
			return nil, rekey.Errorf(rekey.CodeNotFound, "no check of %s applies to environment %s", config.FileName, env).
				WithHint("remove environments from a check, or add %s to its environments", env)
		}
		return nil, rekey.Errorf(rekey.CodeNotFound, "%s has no checks", config.FileName).WithHint("%s", checksExample)
	}
	if len(names) == 0 {
		return all, nil
	}
	var out []config.Check
	for _, n := range names {
		i := slices.IndexFunc(all, func(c config.Check) bool { return c.Name == n })
		if i < 0 {
			var have []string
			for _, c := range all {
				have = append(have, c.Name)
			}
			return nil, rekey.Errorf(rekey.CodeNotFound, "no check %q for environment %s", n, env).WithHint("checks: %s", strings.Join(have, ", "))
		}
		if !slices.ContainsFunc(out, func(c config.Check) bool { return c.Name == n }) {
			out = append(out, all[i])
		}
	}
	return out, nil
}

// printCheck prints one result line: status, name, message and counts, then
// the hint of a failure on a line of its own.
func printCheck(w io.Writer, r verify.Result, width int) {
	attempts := fmt.Sprintf("%d attempts", r.Attempts)
	if r.Attempts == 1 {
		attempts = "1 attempt"
	}
	counts := "(" + attempts + ", " + shortDuration(r.Duration) + ")"
	if r.OK {
		fmt.Fprintf(w, "ok    %-*s  %s\n", width, r.Name, counts)
		return
	}
	fmt.Fprintf(w, "FAIL  %-*s  %s %s\n", width, r.Name, r.Message, counts)
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

// opener is how decrypt-sample checks open values: the re-encryption
// engine's codecs (a command codec's program runs until rekey exits).
func (a *app) opener() verify.Opener {
	return func(s config.DecryptSample, key rekey.Value) (func([]byte) error, error) {
		c, err := reencrypt.NewCipher(reencrypt.Config{Codec: s.Codec, Encoding: s.Encoding}, key, a.errw())
		if err != nil {
			return nil, err
		}
		return func(ct []byte) error {
			pt, err := c.Decrypt(ct)
			for i := range pt {
				pt[i] = 0
			}
			return err
		}, nil
	}
}

// envValues are the current values of an environment's secrets and derived
// values, read (and audited) for checks to use and for output to be
// redacted with. They are never printed.
type envValues struct {
	m      map[string]rekey.Value
	redact func(string) string
	red    *secretRedactor
}

// newEnvValues returns vals with red's redaction: every stored version of
// every secret, in every encoding rekey scan recognises.
func newEnvValues(vals map[string]rekey.Value, red *secretRedactor) *envValues {
	return &envValues{m: vals, redact: red.redact, red: red}
}

// resolve returns a copy of a value: checks run concurrently and each wipes
// what it was given when it is done.
func (v *envValues) resolve(name string) (rekey.Value, error) {
	val, ok := v.m[name]
	if !ok {
		return rekey.Value{}, rekey.Errorf(rekey.CodeNotFound, "%s has no current value", name).
			WithHint("run `rekey status`; a derived value needs a value for every secret it references")
	}
	return rekey.NewValue(val.Reveal()), nil
}

func (v *envValues) wipe() {
	if v.red != nil {
		v.red.wipe()
	}
	for _, val := range v.m {
		val.Wipe()
	}
}

// currentValues reads the current value of every secret of env and renders
// the derived values, recording the read in the audit log first (action
// with outcome "started"; fail closed).
func (a *app) currentValues(ctx context.Context, st rekey.Store, cfg *config.Config, env, action, detail string) (*envValues, error) {
	vals := map[string]rekey.Value{}
	attrs := map[string]rekey.Value{} // "NAME.attr", for templates
	err := st.Update(ctx, func(tx rekey.Tx) error {
		cur, err := tx.AllLabeled(env, rekey.LabelCurrent)
		if err != nil {
			return err
		}
		for _, s := range cfg.Secrets {
			v, ok := cur[s.Name]
			if !ok {
				continue
			}
			val, err := tx.Value(env, s.Name, v.N)
			if err != nil {
				return err
			}
			vals[s.Name] = val
			for k, x := range v.Attrs {
				attrs[s.Name+"."+k] = rekey.NewValueString(x)
			}
		}
		_, err = tx.Audit(rekey.AuditEntry{Actor: a.actor(), Action: action, Env: env, Outcome: "started", Detail: detail})
		return err
	})
	if err != nil {
		return nil, err
	}
	tv := maps.Clone(vals)
	maps.Copy(tv, attrs)
	for _, d := range cfg.DerivedFor(env) {
		if v, err := d.Template.Render(tv); err == nil {
			vals[d.Name] = v
		}
	}
	return newEnvValues(vals, newSecretRedactor(ctx, st, slices.Collect(maps.Values(vals))...)), nil
}
