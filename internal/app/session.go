// Package app is rekey's one application layer: a Session opens the
// configuration and the store, takes the environment's lock, recovers what
// a crash left, and builds the rotation engine with its adapters (the .env
// targets, the PostgreSQL and re-encryption appliers, services, checks and
// hooks), all fed by one resolver of live values (live.go) and one redactor
// (redact.go). The commands in cmd/rekey are flags and output over it.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/cmdtarget"
	"github.com/rekeyhq/rekey/internal/config"
	"github.com/rekeyhq/rekey/internal/engine"
	"github.com/rekeyhq/rekey/internal/envfile"
	"github.com/rekeyhq/rekey/internal/flock"
	"github.com/rekeyhq/rekey/internal/sqlite"
	"github.com/rekeyhq/rekey/internal/sshhost"
)

// Options are what the command line gives a session.
type Options struct {
	// ConfigPath is --config ("" = found by walking up from Dir).
	ConfigPath string
	// EnvName is --environment ("" = REKEY_ENVIRONMENT, the only one, or production).
	EnvName string
	// Dir is the working directory ("" = the process's).
	Dir string
	// Getenv reads the environment (nil = os.Getenv).
	Getenv func(string) string
	// Environ is the environment of the commands rekey runs (services,
	// checks, hooks, codecs); it holds no key material (rekey.ChildEnv).
	Environ func() []string
	// Now is the clock (nil = time.Now).
	Now func() time.Time
	// Stderr receives progress lines and the redacted stderr of codecs.
	Stderr io.Writer
	// Warn prints "rekey: warning: …".
	Warn func(format string, args ...any)
	// Passphrase reads the store's passphrase (REKEY_PASSPHRASE or the terminal).
	Passphrase func(prompt string, confirm bool) ([]byte, error)
	// Approve refuses a rekey.yaml that is not approved on this machine; it
	// is not called for a read-only session.
	Approve func(cfg *config.Config) error
	// StateDir is where anchors live outside the project ("" = not kept).
	StateDir string
	// Fault is the engine's fault hook (test builds only).
	Fault func(point string)
	// Progress renders a re-encryption's progress (a line redrawn, or
	// logged); Done ends it. Both optional.
	Progress ProgressFunc
}

// Session is one command's access to a project: its config, store, lock
// and engine. Close releases them; it is safe to call more than once.
type Session struct {
	Opts Options
	// ReadOnly: the command only reports, so it may load a rekey.yaml that
	// is not approved on this machine.
	ReadOnly bool
	// AnchorReset opens the store without comparing it with its anchor and
	// writes the anchor anew (rekey audit anchor --reset).
	AnchorReset bool

	cfg        *config.Config
	store      *sqlite.DB
	lock       *flock.Lock
	extraLocks []*flock.Lock
	// sshControl is the private folder of the master connections of the
	// session's ssh targets (sshHosts), removed by Close.
	sshControl string
	sshHosts   []*sshhost.Host
	locked     bool // a lock was taken: the command acted on an environment
}

// Acted reports whether the session took an environment's lock to act on
// it (and so may have started what `rekey recover` completes).
func (s *Session) Acted() bool { return s.locked }

// New returns a session that opens nothing until asked.
func New(o Options) *Session { return &Session{Opts: o} }

// Getenv reads a variable of the command's environment.
func (s *Session) Getenv(k string) string {
	if s.Opts.Getenv != nil {
		return s.Opts.Getenv(k)
	}
	return os.Getenv(k)
}

// Environ is the environment of the commands rekey runs.
func (s *Session) Environ() []string {
	if s.Opts.Environ != nil {
		return s.Opts.Environ()
	}
	return rekey.ChildEnv(os.Environ())
}

// Now is the session's clock.
func (s *Session) Now() time.Time {
	if s.Opts.Now != nil {
		return s.Opts.Now()
	}
	return time.Now()
}

func (s *Session) warnf(format string, args ...any) {
	if s.Opts.Warn != nil {
		s.Opts.Warn(format, args...)
	}
}

func (s *Session) stderr() io.Writer {
	if s.Opts.Stderr != nil {
		return s.Opts.Stderr
	}
	return io.Discard
}

// Actor is who acts, for the audit log: REKEY_ACTOR, else the user.
func (s *Session) Actor() string {
	if v := s.Getenv("REKEY_ACTOR"); v != "" {
		return v
	}
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return fmt.Sprintf("uid:%d", os.Getuid())
}

// Wd is the working directory.
func (s *Session) Wd() (string, error) {
	if s.Opts.Dir != "" {
		return s.Opts.Dir, nil
	}
	return os.Getwd()
}

// Abs makes p absolute against the working directory.
func (s *Session) Abs(p string) (string, error) {
	if filepath.IsAbs(p) {
		return p, nil
	}
	wd, err := s.Wd()
	if err != nil {
		return "", err
	}
	return filepath.Join(wd, p), nil
}

// Config loads rekey.yaml once; unless the session is read-only, it
// refuses one that is not approved as it is (before any key is read).
func (s *Session) Config() (*config.Config, error) {
	if s.cfg != nil {
		return s.cfg, nil
	}
	path, err := s.ConfigPath()
	if err != nil {
		return nil, err
	}
	cfg, err := config.Load(path)
	if err != nil {
		return nil, ConfigErr(err)
	}
	if !s.ReadOnly && s.Opts.Approve != nil {
		if err := s.Opts.Approve(cfg); err != nil {
			return nil, err
		}
	}
	s.cfg = cfg
	return cfg, nil
}

// approved says whether cfg is approved (always, without an approval
// check): a read-only session loads an unapproved rekey.yaml to report on
// it, and asks before acting on what it names.
func (s *Session) approved(cfg *config.Config) bool {
	return s.Opts.Approve == nil || s.Opts.Approve(cfg) == nil
}

// ConfigPath is the absolute path of rekey.yaml: --config, else found by
// walking up from the working directory.
func (s *Session) ConfigPath() (string, error) {
	if s.Opts.ConfigPath != "" {
		return s.Abs(s.Opts.ConfigPath)
	}
	wd, err := s.Wd()
	if err != nil {
		return "", err
	}
	p, err := config.Find(wd)
	if err != nil {
		return "", ConfigErr(err)
	}
	return p, nil
}

// ConfigErr gives a config error the code config gave it.
func ConfigErr(err error) error {
	var ce *config.Error
	if errors.As(err, &ce) {
		return &rekey.Error{Code: ce.Code(), Msg: ce.Error(), Hint: ce.Hint}
	}
	if errors.Is(err, os.ErrNotExist) {
		return rekey.Wrap(rekey.CodeNotFound, err, "")
	}
	return err
}

// Environment resolves --environment against the config.
func (s *Session) Environment(cfg *config.Config) (*config.Environment, error) {
	name := s.Opts.EnvName
	if name == "" {
		name = s.Getenv("REKEY_ENVIRONMENT")
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

// OpenStore opens the store of the config with its master key.
func (s *Session) OpenStore(ctx context.Context) (*config.Config, *sqlite.DB, error) {
	cfg, err := s.Config()
	if err != nil {
		return nil, nil, err
	}
	if s.store != nil {
		return cfg, s.store, nil
	}
	key, err := s.MasterKey(cfg)
	if err != nil {
		return nil, nil, err
	}
	st, err := sqlite.Open(ctx, cfg.Store.Path, key, s.anchorOpts()...)
	if err != nil {
		return nil, nil, err
	}
	st.Now = s.Now
	s.store = st
	return cfg, st, nil
}

// AnchorDir is where the audit anchors live: $XDG_STATE_HOME/rekey/anchors,
// else ~/.local/state/rekey/anchors — outside the project, so someone who
// can write the project folder cannot roll the anchor back with the store.
func (s *Session) AnchorDir() string {
	if s.Opts.StateDir != "" {
		return filepath.Join(s.Opts.StateDir, "anchors")
	}
	return ""
}

func (s *Session) anchorOpts() []sqlite.Option {
	dir := s.AnchorDir()
	if dir == "" {
		s.warnf("no HOME or XDG_STATE_HOME: the audit anchor is not kept, so a copy of .rekey/rekey.db put back over it would not be noticed")
		return nil
	}
	opts := []sqlite.Option{sqlite.WithAnchor(dir)}
	if s.AnchorReset {
		opts = append(opts, sqlite.WithAnchorReset())
	}
	return opts
}

// Close closes the store (saving its anchor while the lock is still held),
// then releases the locks.
func (s *Session) Close() {
	s.closeSSH()
	if s.store != nil {
		if err := s.store.Close(); err != nil {
			s.warnf("%v: a copy of .rekey/rekey.db put back over it would not be noticed (set XDG_STATE_HOME to a folder you can write)", err)
		}
		s.store = nil
	}
	if s.lock != nil {
		s.lock.Release()
		s.lock = nil
	}
	for _, l := range s.extraLocks {
		l.Release()
	}
	s.extraLocks = nil
}

// Lock takes the environment's rotation lock (once).
func (s *Session) Lock(cfg *config.Config, env string) error {
	if s.lock != nil {
		return nil
	}
	return s.LockName(cfg, env)
}

// LockName takes one environment's lock (several may be held).
func (s *Session) LockName(cfg *config.Config, env string) error {
	l, err := flock.Acquire(s.lockPath(cfg, env))
	if err != nil {
		if errors.Is(err, flock.ErrBusy) {
			return &rekey.Error{Code: rekey.CodeConflict, Msg: fmt.Sprintf("another rekey is working on %s (%v)", env, err), Hint: "wait for it to finish; a lock held by a process that died is released by the kernel", Err: rekey.ErrLocked}
		}
		return err
	}
	s.locked = true
	if s.lock == nil {
		s.lock = l
	} else {
		s.extraLocks = append(s.extraLocks, l)
	}
	return nil
}

// lockPath is the lock file of an environment, beside the store.
func (s *Session) lockPath(cfg *config.Config, env string) string {
	return filepath.Join(filepath.Dir(cfg.Store.Path), "lock-"+env)
}

// Engine builds the rotation engine of an environment with its adapters.
func (s *Session) Engine(cfg *config.Config, st rekey.Store, env *config.Environment) *engine.Engine {
	e := &engine.Engine{
		Store: st, Env: env.Name, Specs: cfg.Secrets, Derived: cfg.DerivedFor(env.Name),
		Targets: map[string]rekey.Target{}, Actor: s.Actor(), Now: s.Now, KeepVersions: cfg.Store.KeepVersions,
		Appliers: map[rekey.Kind]rekey.Applier{}, Fault: s.Opts.Fault,
	}
	e.Appliers[rekey.KindPostgresPassword] = s.PostgresApplier(cfg, env)
	s.wire(e, cfg, env)
	e.Notify = s.rotationNotifier(cfg, env.Name) // rotation events to the outbox (outbox_events.go)
	for _, t := range env.Targets {
		switch {
		case t.Remote():
			e.Targets[t.Name] = sshhost.NewTarget(t.Name, s.sshHost(t), t.Path)
		case t.Type == config.TargetCommand:
			e.Targets[t.Name] = cmdtarget.New(t.Name, t.Read, t.Write, t.Format, cfg.Dir, s.Environ())
		default:
			e.Targets[t.Name] = envfile.New(t.Name, t.Path, cfg.Dir, s.Opts.Warn)
		}
		e.TargetOrder = append(e.TargetOrder, t.Name)
	}
	return e
}

// Mutate opens the store, locks the environment and runs recovery first, as
// every mutating command must.
func (s *Session) Mutate(ctx context.Context) (*config.Config, *sqlite.DB, *config.Environment, *engine.Engine, error) {
	cfg, st, err := s.OpenStore(ctx)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	env, err := s.Environment(cfg)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	if err := s.Lock(cfg, env.Name); err != nil {
		return nil, nil, nil, nil, err
	}
	e := s.Engine(cfg, st, env)
	s.RemoveStaleTemps(ctx, e)
	rep, err := e.Recover(ctx)
	if err != nil {
		return nil, nil, nil, nil, rekey.Wrap(rekey.ErrorCode(err), err, "recover an interrupted rotation")
	}
	for _, id := range rep.RolledForward {
		s.warnf("completed interrupted rotation %s", id)
	}
	for _, id := range rep.RolledBack {
		s.warnf("rolled back interrupted rotation %s", id)
	}
	ends, err := e.ExpireGrace(ctx)
	for _, g := range ends {
		s.warnf("the grace period of %s v%d ended: it no longer works", g.Name, g.Version)
	}
	if err != nil {
		return nil, nil, nil, nil, rekey.Wrap(rekey.ErrorCode(err), err, "end a grace period")
	}
	return cfg, st, env, e, nil
}

// RemoveStaleTemps deletes what a rekey killed while writing a .env target
// of the engine left behind (envfile.Target.RemoveStaleTemps). It is part
// of recovery: callers hold the environment lock.
func (s *Session) RemoveStaleTemps(ctx context.Context, e *engine.Engine) {
	for _, tn := range slices.Sorted(maps.Keys(e.Targets)) {
		var removed []string
		var err error
		var where string
		switch t := e.Targets[tn].(type) {
		case *envfile.Target:
			removed, err = t.RemoveStaleTemps()
			where = t.Rel()
		case *sshhost.Target:
			removed, err = t.RemoveStaleTemps(ctx)
			where = t.Name()
		default:
			continue
		}
		for _, n := range removed {
			s.warnf("removed %s, left beside %s by an interrupted write", n, where)
		}
		if err != nil {
			s.warnf("could not remove what an interrupted write left beside %s (it may hold a secret): %v", where, err)
		}
	}
}

// SSHConfigEnv names the ssh_config rekey gives ssh (-F) for ssh targets;
// unset, ssh reads the user's own (~/.ssh/config). It is taken from the
// environment, never from the project folder: an ssh_config can run
// commands (ProxyCommand), and whoever can write the folder must not.
const SSHConfigEnv = "REKEY_SSH_CONFIG"

// sshHost is how rekey reaches the host of ssh target t: one master
// connection per host for the session, in a private folder, ended by Close.
func (s *Session) sshHost(t config.Target) *sshhost.Host {
	h := &sshhost.Host{Name: t.Name, Dest: t.Host, ConfigFile: s.Getenv(SSHConfigEnv), Env: s.Environ()}
	if s.sshControl == "" {
		sweepSSHControl()
		if d, err := os.MkdirTemp("", "rekey-ssh-"); err == nil {
			s.sshControl = d
		}
	}
	h.ControlDir = s.sshControl
	s.sshHosts = append(s.sshHosts, h)
	return h
}

// sweepSSHControl removes the empty master-connection folders that rekey
// processes killed before Close left in the temporary folder (their
// masters end by themselves within ControlPersist, and take their socket).
func sweepSSHControl() {
	ds, _ := filepath.Glob(filepath.Join(os.TempDir(), "rekey-ssh-*"))
	for _, d := range ds {
		if fi, err := os.Stat(d); err == nil && fi.IsDir() && time.Since(fi.ModTime()) > time.Minute {
			os.Remove(d) // only if empty: a live master's socket keeps it
		}
	}
}

// closeSSH ends the session's master connections and removes their folder.
func (s *Session) closeSSH() {
	for _, h := range s.sshHosts {
		h.Close()
	}
	s.sshHosts = nil
	if s.sshControl != "" {
		os.RemoveAll(s.sshControl)
		s.sshControl = ""
	}
}

// Audit appends one audit record in its own transaction (fail closed:
// callers act only after it returns nil).
func (s *Session) Audit(ctx context.Context, st rekey.Store, e rekey.AuditEntry) error {
	if e.Actor == "" {
		e.Actor = s.Actor()
	}
	return st.Update(ctx, func(tx rekey.Tx) error {
		_, err := tx.Audit(e)
		return err
	})
}

// EachVersion calls fn with every version of every secret of every
// environment in the store, and its unsealed value (scan, doctor, redactor).
func EachVersion(ctx context.Context, st rekey.Store, fn func(v rekey.Version, val rekey.Value)) error {
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
