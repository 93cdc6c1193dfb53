package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/rekeyhq/rekey"
	rkapp "github.com/rekeyhq/rekey/internal/app"
	"github.com/rekeyhq/rekey/internal/config"
	"github.com/rekeyhq/rekey/internal/sqlite"
	"github.com/rekeyhq/rekey/internal/textsafe"
)

const exitCodesHelp = `Exit codes:
  0  success
  1  internal error; for scan: findings (then errors are 2+); for doctor: a check failed
  2  invalid input (flags, rekey.yaml, .env)
  3  not found (secret, version, environment, file)
  4  conflict (another rekey holds the lock, drift, refused without --force)
  5  unsafe: refused because it could lose data or expose a secret, or
     rekey.yaml is not approved on this machine (rekey config trust)
  6  wrong master key, or a store damaged or changed outside rekey (a row
     inserted, edited or replayed; the file rolled back past its anchor)
  7  verification failed: a rotation rolled back (or kept: in an emergency,
     or a data key whose rows moved); a check, service command or
     re-encryption failed (rekey verify, services, reencrypt)
  8  status: something is overdue, weak, missing or re-encryption incomplete
  9  status --due-within: a reason not to deploy (due within the window,
     overdue, weak, drifted, a rotation interrupted, an open incident)
  130, 143  interrupted by SIGINT (Ctrl-C) or SIGTERM: after a command that
     acted on an environment, run ` + "`rekey recover`" + `
`

// Run runs the program with args and returns the exit code.
func (m *Main) Run(ctx context.Context, args []string) int {
	a := &app{m: m, started: time.Now()}
	root := a.rootCommand()
	typeUsageErrors(root)
	root.SetArgs(args)
	root.SetIn(m.Stdin)
	root.SetOut(m.Stdout)
	root.SetErr(m.Stderr)
	// PostgreSQL's warnings and notes (an MD5 password replaced) as warnings.
	cmd, err := root.ExecuteContextC(rkapp.WithServerNotes(ctx, a.warnf))
	a.jsonOut = a.jsonOut || wantsJSON(cmd) // also when a flag did not parse
	a.close()                               // also on error: release the lock and close the store at once
	var ee *exitError
	if sig := a.signal(); sig != nil && !errors.As(err, &ee) {
		return a.interrupted(sig)
	}
	if err == nil {
		return a.exit
	}
	code := 1
	switch {
	case errors.As(err, &ee):
		code = ee.code
	case isUsage(err):
		code = 2
	default:
		code = exitCode(rekey.ErrorCode(err))
		if code == 1 && a.findingsExit {
			code = 2 // scan: 1 means findings, so an error is 2
		}
	}
	if a.jsonOut && !errors.As(err, &ee) { // an exit status (run, demo) says nothing more
		a.printJSONError(err, code)
	} else {
		a.printError(err)
	}
	return code
}

// signal is the signal that interrupted the run, or nil.
func (a *app) signal() os.Signal {
	if a.m.Interrupted == nil {
		return nil
	}
	return a.m.Interrupted()
}

// interrupted ends a run that SIGINT or SIGTERM cut short: one line that
// says where things stand and the next command (never the error of the step
// that was cut, which would blame a service or a database that was not at
// fault), and the shell's status for the signal (130, 143).
func (a *app) interrupted(sig os.Signal) int {
	name, code := "SIGINT", 130
	if sig == syscall.SIGTERM {
		name, code = "SIGTERM", 143
	}
	msg, hint := "interrupted ("+name+"): nothing was changed", ""
	if a.ses != nil && a.ses.Acted() {
		msg = "interrupted (" + name + "): what it had started is journaled in the store; run `rekey recover` to complete it or roll it back"
		hint = "rekey recover"
	}
	if a.jsonOut {
		a.printJSONError(&rekey.Error{Code: rekey.CodeInternal, Msg: msg, Hint: hint}, code)
	} else {
		fmt.Fprintf(a.m.Stderr, "rekey: %s\n", msg)
	}
	return code
}

// exitCode maps an error code to the process exit status (the table in
// exitCodesHelp): the domain has codes, only the command has exit statuses.
func exitCode(c rekey.Code) int {
	switch c {
	case rekey.CodeInvalid:
		return 2
	case rekey.CodeNotFound:
		return 3
	case rekey.CodeConflict:
		return 4
	case rekey.CodeUnsafe:
		return 5
	case rekey.CodeAuth:
		return 6
	case rekey.CodeVerifyFailed:
		return 7
	default:
		return 1
	}
}

// exitError carries a child's exit status (rekey run) or a status code.
type exitError struct{ code int }

func (e *exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// usageError is a command line that does not parse: an unknown command,
// a wrong number of arguments (cobra's own messages, typed here so that the
// exit status never depends on their wording). Flag errors are
// rekey.CodeInvalid errors (SetFlagErrorFunc).
type usageError struct {
	err error
	cmd string // the command whose help to see ("" for rekey's)
}

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func isUsage(err error) bool {
	var ue *usageError
	return errors.As(err, &ue)
}

// typeUsageErrors makes every argument check of c and its subcommands
// return a usageError; the root refuses an unknown command the same way.
func typeUsageErrors(c *cobra.Command) {
	if !c.HasParent() && c.RunE == nil {
		c.Args = cobra.ArbitraryArgs
		c.RunE = func(c *cobra.Command, args []string) error {
			if len(args) == 0 {
				return c.Help()
			}
			msg := fmt.Sprintf("unknown command %q for %q", args[0], c.CommandPath())
			if s := c.SuggestionsFor(args[0]); len(s) > 0 {
				msg += "\n\nDid you mean this?\n\t" + strings.Join(s, "\n\t")
			}
			return &usageError{err: errors.New(msg)}
		}
	}
	if check := c.Args; check != nil {
		c.Args = func(c *cobra.Command, args []string) error {
			if err := check(c, args); err != nil {
				return &usageError{err: err, cmd: c.CommandPath()}
			}
			return nil
		}
	}
	for _, sub := range c.Commands() {
		typeUsageErrors(sub)
	}
}

func (a *app) printError(err error) {
	var ee *exitError
	if errors.As(err, &ee) && ee.code >= 0 {
		if rekey.ErrorCode(err) == rekey.CodeInternal && !strings.Contains(err.Error(), "exit status") {
			fmt.Fprintf(a.m.Stderr, "rekey: error: %v\n", err)
		}
		return
	}
	fmt.Fprintf(a.m.Stderr, "rekey: error: %s\n", textsafe.Lines(err.Error()))
	if h := rekey.ErrorHint(err); h != "" {
		fmt.Fprintf(a.m.Stderr, "rekey: hint: %s\n", textsafe.Lines(h))
	} else if isUsage(err) {
		var ue *usageError
		errors.As(err, &ue)
		fmt.Fprintf(a.m.Stderr, "rekey: hint: see `%s --help`\n", cmp.Or(ue.cmd, "rekey"))
	}
}

type app struct {
	m       *Main
	cfgPath string
	envName string
	exit    int
	// ses is the command's session (internal/app): config, store, lock,
	// engine. Created once the flags are parsed.
	ses      *rkapp.Session
	cfg      *config.Config // what ses loaded (doctor reads it)
	warnings []string
	// findingsExit: exit 1 means findings (scan), so errors exit 2 or more.
	findingsExit bool
	// progressOpen: a progress line is being redrawn on stderr.
	progressOpen bool
	// quiet and verbose are the global flags (outputHelp); jsonOut: the
	// command was asked for JSON (errors are JSON too, json.go).
	quiet, verbose, jsonOut bool
	// colourOn caches whether stdout is coloured (colour.go).
	colourOn *bool
	// started and lastStep time the narration (--verbose).
	started, lastStep time.Time
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "rekey",
		Short: "Rotate a project's secrets safely: sealed versions, crash-safe rotations, schedule, audit trail",
		Long: `rekey turns a secret-rotation runbook into safe, audited commands.

It keeps every version of every secret sealed in an embedded store
(.rekey/rekey.db, under a master key kept outside the project), rotates
them through a journaled state machine that survives a crash at any moment
(create → apply → publish → restart → re-encrypt → verify → finish): ALTER
ROLE with a client-side SCRAM verifier for PostgreSQL passwords (single or
alternating roles), online re-encryption of the columns a data key protects,
restarts of the services that consume a change, checks of the application,
rollback when they fail. It edits .env files without touching a byte it
does not change, and records every read and change in a hash-chained audit
log. No value is ever printed except by ` + "`rekey get`" + `.

Start with:  rekey demo                  (a tour in a temporary folder)
             rekey demo --with-postgres  (the whole runbook against a real app)
             rekey init --env-file .env

Master key: REKEY_MASTER_KEY (base64 of 32 bytes, as ` + "`openssl rand -base64 32`" + `
prints) overrides the key file named in rekey.yaml; a passphrase store reads
REKEY_PASSPHRASE or asks on the terminal.

rekey.yaml says which commands rekey runs as you and where values go, and
whoever can write the project can edit it: so rekey acts only on a
rekey.yaml approved on this machine. After an edit (yours or a pull),
review it with ` + "`rekey config diff`" + ` and approve it with ` + "`rekey config trust`" + `;
until then rotate, recover, verify, run and the other commands that act on
it refuse it (exit 5). init approves the rekey.yaml it writes.

` + outputHelp + `
` + exitCodesHelp,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       versionLine(),
	}
	root.SetVersionTemplate("{{.Version}}\n")
	root.Flags().Bool("version", false, "print rekey's version (as rekey version does)")
	root.PersistentFlags().StringVar(&a.cfgPath, "config", "", "path of rekey.yaml (default: found by walking up from the working directory)")
	root.PersistentFlags().StringVarP(&a.envName, "environment", "e", "", "environment (default: production, or the only one in rekey.yaml)")
	root.PersistentFlags().BoolVarP(&a.quiet, "quiet", "q", false, "print only warnings, errors and the data asked for (no step narration, progress or notes)")
	root.PersistentFlags().BoolVar(&a.verbose, "verbose", false, "also print the config and environment used, each step's time and the commands run for services")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &rekey.Error{Code: rekey.CodeInvalid, Msg: err.Error(), Hint: "see `" + c.CommandPath() + " --help`"}
	})
	root.AddCommand(
		a.initCommand(), a.statusCommand(), a.rotateCommand(), a.historyCommand(), a.getCommand(),
		a.setCommand(), a.runCommand(), a.recoverCommand(), a.rollbackCommand(), a.publishCommand(),
		a.auditCommand(), a.reportCommand(), a.masterCommand(), a.scanCommand(), a.demoCommand(),
		a.doctorCommand(), a.exampleCommand(), a.verifyCommand(), a.servicesCommand(), a.reencryptCommand(), a.postgresCommand(),
		a.incidentCommand(),
		a.configCommand(), a.notifyCommand(), a.remindCommand(), a.hostsCommand(), a.versionCommand(),
	)
	root.SetHelpCommand(helpCommand(root))
	root.PersistentPreRunE = func(c *cobra.Command, _ []string) error {
		a.jsonOut = wantsJSON(c)
		if a.quiet && a.verbose {
			return &rekey.Error{Code: rekey.CodeInvalid, Msg: "--quiet and --verbose cannot be used together", Hint: "pass one of them"}
		}
		a.s().ReadOnly = readOnlyCommand(c)
		a.verboseStart(c)
		return nil
	}
	root.PersistentPostRunE = func(*cobra.Command, []string) error { a.close(); return nil }
	return root
}

func (a *app) getenv(k string) string {
	if v, ok := a.m.Env[k]; ok {
		return v
	}
	return os.Getenv(k)
}

func (a *app) out() io.Writer  { return a.m.Stdout }
func (a *app) errw() io.Writer { return a.m.Stderr }

func (a *app) warnf(format string, args ...any) {
	fmt.Fprintf(a.m.Stderr, "rekey: warning: %s\n", textsafe.Lines(fmt.Sprintf(format, args...)))
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// s is the command's session, created on first use (the flags are parsed
// by then).
func (a *app) s() *rkapp.Session {
	if a.ses == nil {
		a.ses = rkapp.New(rkapp.Options{
			ConfigPath: a.cfgPath, EnvName: a.envName, Dir: a.m.Dir, Getenv: a.getenv, Environ: a.environ,
			Now: a.now, Stderr: a.errw(), Warn: a.warnf, Passphrase: a.passphrase, Approve: a.requireApproval,
			StateDir: a.stateDir(), Fault: a.fault(), Progress: a.progressPrinter,
		})
		if a.quiet {
			a.ses.Opts.Progress = nil // no progress lines
		}
	}
	return a.ses
}

func (a *app) now() time.Time {
	if testHooks.now != nil { // test builds only (testhooks.go)
		if t, ok := testHooks.now(a.getenv); ok {
			return t
		}
	}
	return time.Now()
}

func (a *app) fault() func(string) {
	if testHooks.fault != nil { // test builds only (testhooks.go)
		return testHooks.fault(a.getenv)
	}
	return nil
}

func (a *app) close() {
	if a.ses != nil {
		a.ses.Close()
	}
}

// The session's, for the commands that have not moved to it yet.
func (a *app) loadConfig() (*config.Config, error) {
	cfg, err := a.s().Config()
	a.cfg = cfg
	return cfg, err
}

func (a *app) openStore(ctx context.Context) (*config.Config, *sqlite.DB, error) {
	cfg, st, err := a.s().OpenStore(ctx)
	if cfg != nil {
		a.cfg = cfg
	}
	return cfg, st, err
}

func (a *app) environment(cfg *config.Config) (*config.Environment, error) {
	return a.s().Environment(cfg)
}
func (a *app) actor() string       { return a.s().Actor() }
func (a *app) wd() (string, error) { return a.s().Wd() }

// outputHelp is the global flags' part of `rekey --help`.
const outputHelp = `Output: tables and results on stdout; warnings, errors and the steps of a
change (narration) on stderr.
  -q, --quiet  only warnings, errors and the data asked for (tables, values,
               JSON, the one result line of a change); no step narration, no
               progress, no notes such as "nothing to recover"
  --verbose    also the rekey.yaml and environment used and which REKEY_*
               variables are set (names only), each step's time, and the
               command each service status or restart ran
  --json       (status, doctor, verify, services status, audit, history,
               rotate, recover, rollback, version; report --format json,
               scan --report-format json) one JSON document on stdout,
               snake_case keys; an error is {"error": {"code", "message",
               "hint", "exit_code"}} on stderr, with the same exit status
Colour marks states (ok, overdue, FAIL...) on a terminal only: never in a
pipe, a file or JSON, nor when NO_COLOR is set or TERM=dumb.
`

// infof prints an informational line on stdout (a note, not the data the
// command was asked for): --quiet drops it.
func (a *app) infof(format string, args ...any) {
	if !a.quiet {
		fmt.Fprintf(a.out(), format+"\n", args...)
	}
}

// verbosef prints a --verbose detail on stderr.
func (a *app) verbosef(format string, args ...any) {
	if a.verbose {
		fmt.Fprintf(a.errw(), "rekey: %s\n", textsafe.Lines(fmt.Sprintf(format, args...)))
	}
}

// verboseStart prints, with --verbose, the rekey.yaml and environment the
// command uses and the names of the REKEY_* variables set (never a value).
func (a *app) verboseStart(c *cobra.Command) {
	if !a.verbose {
		return
	}
	var set []string
	for _, kv := range a.environ0() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "REKEY_") {
			set = append(set, k)
		}
	}
	sort.Strings(set)
	a.verbosef("variables set: %s", cmp.Or(strings.Join(slices.Compact(set), ", "), "none of REKEY_*"))
	if c.Name() == "init" || c.Name() == "demo" || c.Name() == "version" {
		return
	}
	path, err := a.s().ConfigPath()
	if err != nil {
		return
	}
	cfg, err := config.Load(path)
	if err != nil {
		a.verbosef("config %s", path)
		return
	}
	env, err := a.s().Environment(cfg)
	if err != nil {
		a.verbosef("config %s", path)
		return
	}
	a.verbosef("config %s, environment %s (%s)", path, env.Name, envSource(a))
}

// envSource says where the environment's name came from.
func envSource(a *app) string {
	switch {
	case a.envName != "":
		return "--environment"
	case a.getenv("REKEY_ENVIRONMENT") != "":
		return "REKEY_ENVIRONMENT"
	}
	return "default"
}

// environ0 is rekey's environment with Main.Env applied (key material
// included: only names are read from it).
func (a *app) environ0() []string {
	var env []string
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); !hasKey(a.m.Env, k) {
			env = append(env, kv)
		}
	}
	for k, v := range a.m.Env {
		if v != "" {
			env = append(env, k+"="+v)
		}
	}
	return env
}

func hasKey(m map[string]string, k string) bool { _, ok := m[k]; return ok }
