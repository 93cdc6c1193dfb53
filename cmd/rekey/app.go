package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/config"
	"github.com/rekeyhq/rekey/internal/flock"
	"github.com/rekeyhq/rekey/internal/textsafe"
	"github.com/rekeyhq/rekey/seal"
	"github.com/rekeyhq/rekey/internal/sqlite"
	"github.com/spf13/cobra"
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
`

// Run runs the program with args and returns the exit code.
func (m *Main) Run(ctx context.Context, args []string) int {
	a := &app{m: m}
	root := a.rootCommand()
	root.SetArgs(args)
	root.SetIn(m.Stdin)
	root.SetOut(m.Stdout)
	root.SetErr(m.Stderr)
	err := root.ExecuteContext(ctx)
	a.close() // also on error: release the lock and close the store at once
	if err == nil {
		return a.exit
	}
	a.printError(err)
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	if isUsage(err) {
		return 2
	}
	code := exitCode(rekey.ErrorCode(err))
	if code == 1 && a.findingsExit {
		code = 2 // scan: 1 means findings, so an error is 2
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

func isUsage(err error) bool {
	s := err.Error()
	return strings.HasPrefix(s, "unknown command") || strings.HasPrefix(s, "unknown flag") || strings.HasPrefix(s, "unknown shorthand") ||
		strings.Contains(s, "flag needs an argument") || strings.HasPrefix(s, "invalid argument") || strings.Contains(s, "accepts ") || strings.Contains(s, "requires at least")
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
		fmt.Fprintf(a.m.Stderr, "rekey: hint: see `rekey --help`\n")
	}
}

type app struct {
	m          *Main
	cfgPath    string
	envName    string
	exit       int
	cfg        *config.Config
	store      *sqlite.DB
	lock       *flock.Lock
	extraLocks []*flock.Lock
	warnings   []string
	// findingsExit: exit 1 means findings (scan), so errors exit 2 or more.
	findingsExit bool
	// progressOpen: a progress line is being redrawn on stderr.
	progressOpen bool
	// anchorReset: open the store without comparing it with its anchor, and
	// write the anchor anew (rekey audit anchor --reset).
	anchorReset bool
	// readOnly: the command only reports, so it may load a rekey.yaml that
	// is not approved on this machine (approval.go); the others refuse it.
	readOnly bool
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

` + exitCodesHelp,
		SilenceUsage:      true,
		SilenceErrors:     true,
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
	}
	root.PersistentFlags().StringVar(&a.cfgPath, "config", "", "path of rekey.yaml (default: found by walking up from the working directory)")
	root.PersistentFlags().StringVarP(&a.envName, "environment", "e", "", "environment (default: production, or the only one in rekey.yaml)")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &rekey.Error{Code: rekey.CodeInvalid, Msg: err.Error(), Hint: "see `" + c.CommandPath() + " --help`"}
	})
	root.AddCommand(
		a.initCommand(), a.statusCommand(), a.rotateCommand(), a.historyCommand(), a.getCommand(),
		a.setCommand(), a.runCommand(), a.recoverCommand(), a.rollbackCommand(), a.publishCommand(),
		a.auditCommand(), a.reportCommand(), a.masterCommand(), a.scanCommand(), a.demoCommand(), a.demoAppCommand(),
		a.doctorCommand(), a.exampleCommand(), a.verifyCommand(), a.servicesCommand(), a.reencryptCommand(), a.postgresCommand(),
		a.configCommand(),
	)
	root.SetHelpCommand(&cobra.Command{Hidden: true})
	root.PersistentPreRunE = func(c *cobra.Command, _ []string) error { a.readOnly = readOnlyCommand(c); return nil }
	root.PersistentPostRunE = func(*cobra.Command, []string) error { a.close(); return nil }
	return root
}

func (a *app) getenv(k string) string {
	if v, ok := a.m.Env[k]; ok {
		return v
	}
	return os.Getenv(k)
}

func (a *app) wd() (string, error) {
	if a.m.Dir != "" {
		return a.m.Dir, nil
	}
	return os.Getwd()
}

func (a *app) abs(p string) (string, error) {
	if filepath.IsAbs(p) {
		return p, nil
	}
	wd, err := a.wd()
	if err != nil {
		return "", err
	}
	return filepath.Join(wd, p), nil
}

func (a *app) out() io.Writer  { return a.m.Stdout }
func (a *app) errw() io.Writer { return a.m.Stderr }

func (a *app) warnf(format string, args ...any) {
	fmt.Fprintf(a.m.Stderr, "rekey: warning: %s\n", textsafe.Lines(fmt.Sprintf(format, args...)))
}

func (a *app) actor() string {
	if v := a.getenv("REKEY_ACTOR"); v != "" {
		return v
	}
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return fmt.Sprintf("uid:%d", os.Getuid())
}

func (a *app) now() time.Time {
	if testHooks.now != nil { // test builds only (testhooks.go)
		if t, ok := testHooks.now(a.getenv); ok {
			return t
		}
	}
	return time.Now()
}

// loadConfig loads rekey.yaml; unless the command only reports, it
// refuses one that is not approved as it is (before any key is read).
func (a *app) loadConfig() (*config.Config, error) {
	if a.cfg != nil {
		return a.cfg, nil
	}
	path, err := a.configPath()
	if err != nil {
		return nil, err
	}
	cfg, err := config.Load(path)
	if err != nil {
		return nil, configErr(err)
	}
	if !a.readOnly {
		if err := a.requireApproval(cfg); err != nil {
			return nil, err
		}
	}
	a.cfg = cfg
	return cfg, nil
}

// configPath is the absolute path of rekey.yaml: --config, else found by
// walking up from the working directory.
func (a *app) configPath() (string, error) {
	if a.cfgPath != "" {
		return a.abs(a.cfgPath)
	}
	wd, err := a.wd()
	if err != nil {
		return "", err
	}
	p, err := config.Find(wd)
	if err != nil {
		return "", configErr(err)
	}
	return p, nil
}

func configErr(err error) error {
	var ce *config.Error
	if errors.As(err, &ce) {
		return &rekey.Error{Code: ce.Code(), Msg: ce.Error(), Hint: ce.Hint}
	}
	if errors.Is(err, os.ErrNotExist) {
		return rekey.Wrap(rekey.CodeNotFound, err, "")
	}
	return err
}

// environment resolves --environment against the config.
func (a *app) environment(cfg *config.Config) (*config.Environment, error) {
	name := a.envName
	if name == "" {
		name = a.getenv("REKEY_ENVIRONMENT")
	}
	if name == "" {
		if len(cfg.Environments) == 1 {
			name = cfg.Environments[0].Name
		} else {
			name = "production"
		}
	}
	env, ok := cfg.Environment(name)
	if !ok {
		var names []string
		for _, e := range cfg.Environments {
			names = append(names, e.Name)
		}
		return nil, rekey.Errorf(rekey.CodeNotFound, "no environment %q in %s", name, cfg.Path).WithHint("environments: %s", strings.Join(names, ", "))
	}
	return env, nil
}

// masterKey finds the master key: REKEY_MASTER_KEY, else what rekey.yaml names.
func (a *app) masterKey(cfg *config.Config) (seal.Key, error) {
	if v := a.getenv("REKEY_MASTER_KEY"); v != "" {
		k, err := seal.ParseKey(v)
		if err != nil {
			return seal.Key{}, rekey.Wrap(rekey.CodeInvalid, err, "REKEY_MASTER_KEY").WithHint("it must be base64 of 32 bytes, as `openssl rand -base64 32` prints")
		}
		return k, nil
	}
	mk := cfg.Store.MasterKey
	switch {
	case strings.HasPrefix(mk, "file:"):
		path := strings.TrimPrefix(mk, "file:")
		k, err := seal.ReadKeyFile(path)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				// After an interrupted `rekey master rotate`, the new key file sits beside the old one.
				if k2, ok := a.findKeyByID(cfg, path); ok {
					return k2, nil
				}
				return seal.Key{}, rekey.Errorf(rekey.CodeAuth, "master key file %s does not exist", path).WithHint("restore it from your backup, or set REKEY_MASTER_KEY")
			}
			return seal.Key{}, rekey.Wrap(rekey.CodeAuth, err, "read master key")
		}
		if _, id, err := sqlite.KDF(cfg.Store.Path); err == nil && id != k.ID() {
			if k2, ok := a.findKeyByID(cfg, path); ok {
				return k2, nil
			}
		}
		return k, nil
	case mk == "passphrase":
		kdf, _, err := sqlite.KDF(cfg.Store.Path)
		if err != nil {
			return seal.Key{}, err
		}
		p, err := seal.ParseKDFParams(kdf)
		if err != nil {
			return seal.Key{}, rekey.Wrap(rekey.CodeAuth, err, "store passphrase parameters")
		}
		pass, err := a.passphrase("Passphrase for the rekey store: ", false)
		if err != nil {
			return seal.Key{}, err
		}
		k := seal.KeyFromPassphrase(pass, p)
		seal.Wipe(pass)
		return k, nil
	default:
		return seal.Key{}, rekey.Errorf(rekey.CodeAuth, "no master key: REKEY_MASTER_KEY is not set").WithHint("export REKEY_MASTER_KEY (base64 of 32 bytes), or set store.master_key in rekey.yaml to file:PATH")
	}
}

// findKeyByID looks beside path for the key file whose ID the store expects.
func (a *app) findKeyByID(cfg *config.Config, path string) (seal.Key, bool) {
	_, id, err := sqlite.KDF(cfg.Store.Path)
	if err != nil || id == "" {
		return seal.Key{}, false
	}
	matches, _ := filepath.Glob(filepath.Join(filepath.Dir(path), "*"+id+".key"))
	for _, m := range matches {
		if k, err := seal.ReadKeyFile(m); err == nil && k.ID() == id {
			return k, true
		}
	}
	return seal.Key{}, false
}

// openStore opens the store of the config with its master key.
func (a *app) openStore(ctx context.Context) (*config.Config, *sqlite.DB, error) {
	cfg, err := a.loadConfig()
	if err != nil {
		return nil, nil, err
	}
	if a.store != nil {
		return cfg, a.store, nil
	}
	key, err := a.masterKey(cfg)
	if err != nil {
		return nil, nil, err
	}
	st, err := sqlite.Open(ctx, cfg.Store.Path, key, a.anchorOpts()...)
	if err != nil {
		return nil, nil, err
	}
	st.Now = a.now
	a.store = st
	return cfg, st, nil
}

func (a *app) close() {
	// The store first: its anchor is written while the lock is still held.
	if a.store != nil {
		if err := a.store.Close(); err != nil {
			a.warnf("%v: a copy of .rekey/rekey.db put back over it would not be noticed (set XDG_STATE_HOME to a folder you can write)", err)
		}
		a.store = nil
	}
	if a.lock != nil {
		a.lock.Release()
		a.lock = nil
	}
	for _, l := range a.extraLocks {
		l.Release()
	}
	a.extraLocks = nil
}

// lockEnv takes the environment's rotation lock.
func (a *app) lockEnv(cfg *config.Config, env string) error {
	if a.lock != nil {
		return nil
	}
	return a.lockEnvName(cfg, env)
}

// lockEnvName takes one environment's lock (several may be held).
func (a *app) lockEnvName(cfg *config.Config, env string) error {
	path := filepath.Join(filepath.Dir(cfg.Store.Path), "lock-"+env)
	l, err := flock.Acquire(path)
	if err != nil {
		if errors.Is(err, flock.ErrBusy) {
			return &rekey.Error{Code: rekey.CodeConflict, Msg: fmt.Sprintf("another rekey is working on %s (%v)", env, err), Hint: "wait for it to finish; a lock held by a process that died is released by the kernel", Err: rekey.ErrLocked}
		}
		return err
	}
	if a.lock == nil {
		a.lock = l
	} else {
		a.extraLocks = append(a.extraLocks, l)
	}
	return nil
}

// engine builds the rotation engine of an environment.
func (a *app) engine(cfg *config.Config, st rekey.Store, env *config.Environment) *rekey.Engine {
	e := &rekey.Engine{
		Store: st, Env: env.Name, Specs: cfg.Secrets, Derived: cfg.DerivedFor(env.Name),
		Targets: map[string]rekey.Target{}, Actor: a.actor(), Now: a.now, KeepVersions: cfg.Store.KeepVersions,
		Appliers: map[rekey.Kind]rekey.Applier{},
	}
	e.Appliers[rekey.KindPostgresPassword] = a.postgresApplier(cfg, env)
	a.wire(e, cfg, env)
	for _, t := range env.Targets {
		e.Targets[t.Name] = &envFileTarget{name: t.Name, path: t.Path, rel: relTo(cfg.Dir, t.Path), warn: a.warnf}
		e.TargetOrder = append(e.TargetOrder, t.Name)
	}
	if testHooks.fault != nil { // test builds only (testhooks.go)
		e.Fault = testHooks.fault(a.getenv)
	}
	return e
}

// mutate opens the store, locks the environment and runs recovery first, as
// every mutating command must.
func (a *app) mutate(ctx context.Context) (*config.Config, *sqlite.DB, *config.Environment, *rekey.Engine, error) {
	cfg, st, err := a.openStore(ctx)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	env, err := a.environment(cfg)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	if err := a.lockEnv(cfg, env.Name); err != nil {
		return nil, nil, nil, nil, err
	}
	e := a.engine(cfg, st, env)
	a.removeStaleTemps(e)
	rep, err := e.Recover(ctx)
	if err != nil {
		return nil, nil, nil, nil, rekey.Wrap(rekey.ErrorCode(err), err, "recover an interrupted rotation")
	}
	for _, id := range rep.RolledForward {
		a.warnf("completed interrupted rotation %s", id)
	}
	for _, id := range rep.RolledBack {
		a.warnf("rolled back interrupted rotation %s", id)
	}
	ends, err := e.ExpireGrace(ctx)
	for _, g := range ends {
		a.warnf("the grace period of %s v%d ended: it no longer works", g.Name, g.Version)
	}
	if err != nil {
		return nil, nil, nil, nil, rekey.Wrap(rekey.ErrorCode(err), err, "end a grace period")
	}
	return cfg, st, env, e, nil
}

// removeStaleTemps deletes what a rekey killed while writing a .env target
// of the engine left behind (see envFileTarget.removeStaleTemps). It is part
// of recovery: callers hold the environment lock.
func (a *app) removeStaleTemps(e *rekey.Engine) {
	for _, tn := range sortedKeys(e.Targets) {
		t, ok := e.Targets[tn].(*envFileTarget)
		if !ok {
			continue
		}
		removed, err := t.removeStaleTemps()
		for _, n := range removed {
			a.warnf("removed %s, left beside %s by an interrupted write", n, t.rel)
		}
		if err != nil {
			a.warnf("could not remove what an interrupted write left beside %s (it may hold a secret): %v", t.rel, err)
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// audit appends one audit record in its own transaction (fail closed: callers
// act only after it returns nil).
func (a *app) audit(ctx context.Context, st rekey.Store, e rekey.AuditEntry) error {
	if e.Actor == "" {
		e.Actor = a.actor()
	}
	return st.Update(ctx, func(tx rekey.Tx) error {
		_, err := tx.Audit(e)
		return err
	})
}

// eachVersion calls fn with every version of every secret of every
// environment in the store, and its unsealed value (scan, doctor).
func eachVersion(ctx context.Context, st rekey.Store, fn func(v rekey.Version, val rekey.Value)) error {
	return st.View(ctx, func(tx rekey.Tx) error {
		return rekey.EachVersion(tx, func(v rekey.Version) error {
			val, err := tx.Value(v.Env, v.Name, v.N)
			if err == nil {
				fn(v, val)
			}
			return err
		})
	})
}
