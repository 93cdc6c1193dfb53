package app

import (
	"context"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/config"
	"github.com/rekeyhq/rekey/internal/engine"
	"github.com/rekeyhq/rekey/internal/postgres"
	"github.com/rekeyhq/rekey/internal/reencrypt"
	"github.com/rekeyhq/rekey/internal/services"
	"github.com/rekeyhq/rekey/internal/verify"
)

// wire gives the engine what rekey.yaml declares around the rotation itself:
// the services that consume the secrets, the checks, on_rotate hooks and the
// re-encryption of data keys.
func (s *Session) wire(e *engine.Engine, cfg *config.Config, env *config.Environment) {
	w := &wiring{s: s, cfg: cfg, env: env, e: e}
	if len(cfg.ServicesFor(env.Name)) > 0 {
		e.Services = w
	}
	if len(cfg.ChecksFor(env.Name)) > 0 {
		e.Checks = w
	}
	e.Hooks = w
	e.Migrators = map[rekey.Kind]rekey.Migrator{rekey.KindDataKey: &dataKeyMigrator{w: w}}
}

var (
	_ rekey.Services = (*wiring)(nil)
	_ rekey.Checks   = (*wiring)(nil)
	_ rekey.Hooks    = (*wiring)(nil)
)

type wiring struct {
	s   *Session
	cfg *config.Config
	env *config.Environment
	e   *engine.Engine
	// logStart and logOffsets are when the last restart began and where
	// the log checks' files ended then (markLogs).
	logStart   time.Time
	logOffsets map[string]int64
}

// liveValues are the values the environment runs on during a rotation
// (pending where there is one, else current), with the derived values.
func (w *wiring) liveValues(ctx context.Context) (*Values, error) {
	return ResolveValues(ctx, w.e.Store, w.cfg, w.env.Name, Live, nil)
}

func (w *wiring) serviceOptions(ctx context.Context) services.Options {
	o := services.Options{Dir: w.cfg.Dir, Env: w.s.Environ(), Derived: w.cfg.DerivedFor(w.env.Name)}
	if vals, err := w.liveValues(ctx); err == nil {
		o.Redact = vals.Redact
	} else {
		o.Redact = func(string) string { return RedactionUnavailable }
	}
	o.OnResult = func(r services.Result) {
		switch {
		case r.Skipped != "":
		case !r.OK && ctx.Err() != nil:
			w.say("%s %s: interrupted", r.Action, r.Service) // not the service's fault
		default:
			w.say("%s %s: %s", r.Action, r.Service, map[bool]string{true: "ok", false: "FAILED"}[r.OK])
		}
	}
	return o
}

// consumed maps keys to what services declare they consume: NAME_PREVIOUS
// is read by whoever reads NAME.
func (w *wiring) consumed(keys []string) []string {
	out := slices.Clone(keys)
	for _, s := range w.cfg.Secrets {
		if k := s.PreviousKey(); k != "" && slices.Contains(keys, k) && !slices.Contains(out, s.Name) {
			out = append(out, s.Name)
		}
	}
	return out
}

// markLogs records, as a restart begins, when it began and where the
// files of the log checks end: the checks read what follows.
func (w *wiring) markLogs() {
	w.logStart = time.Now()
	w.logOffsets = map[string]int64{}
	for _, c := range w.cfg.ChecksFor(w.env.Name) {
		if c.Log == nil || c.Log.File == "" {
			continue
		}
		if fi, err := os.Stat(c.Log.File); err == nil {
			w.logOffsets[c.Log.File] = fi.Size()
		}
	}
}

// Restart implements rekey.Services.
func (w *wiring) Restart(ctx context.Context, keys []string) error {
	w.markLogs()
	_, err := services.Restart(ctx, w.cfg.ServicesFor(w.env.Name), w.consumed(keys), w.serviceOptions(ctx))
	return err
}

// Stop implements rekey.Services: the consumers of keys, in reverse order.
func (w *wiring) Stop(ctx context.Context, keys []string) error {
	svcs := services.Affected(w.cfg.ServicesFor(w.env.Name), w.consumed(keys), w.cfg.DerivedFor(w.env.Name))
	o := w.serviceOptions(ctx)
	for i := len(svcs) - 1; i >= 0; i-- {
		s := svcs[i]
		if s.Stop.IsZero() {
			return rekey.Errorf(rekey.CodeInvalid, "service %s has no stop command, and it must be stopped (incident --stop, re-encryption in maintenance mode)", s.Name).
				WithHint("add stop: [...] and start: [...] to service %s in %s (or the shorthand systemd: UNIT)", s.Name, config.FileName)
		}
		if r := services.Run(ctx, s.Name, services.ActionStop, s.Stop, o); !r.OK {
			return rekey.Errorf(rekey.CodeVerifyFailed, "stop of service %s failed: %s", s.Name, r.Err)
		}
	}
	return nil
}

// Start implements rekey.Services.
func (w *wiring) Start(ctx context.Context, keys []string) error {
	w.markLogs()
	svcs := services.Affected(w.cfg.ServicesFor(w.env.Name), w.consumed(keys), w.cfg.DerivedFor(w.env.Name))
	o := w.serviceOptions(ctx)
	for _, s := range svcs {
		c := s.Start
		action := services.ActionStart
		if c.IsZero() {
			c, action = s.Restart, services.ActionRestart
		}
		if r := services.Run(ctx, s.Name, action, c, o); !r.OK {
			return rekey.Errorf(rekey.CodeVerifyFailed, "%s of service %s failed: %s", action, s.Name, r.Err)
		}
	}
	return nil
}

// Run implements rekey.Checks: every check of the environment, against the
// values it runs on now.
func (w *wiring) Run(ctx context.Context) error {
	vals, err := w.liveValues(ctx)
	if err != nil {
		return err
	}
	defer vals.Wipe()
	prev, err := publishedPrevious(ctx, w.e.Store, w.cfg, w.env.Name, func() map[string]rekey.Target { return w.e.Targets })
	if err != nil {
		return err
	}
	defer wipeAll(prev)
	opts := verify.Options{Dir: w.cfg.Dir, Env: w.s.Environ(), Redact: vals.Redact, Opener: w.s.opener(), Postgres: postgres.URLDialer{}, Previous: prev,
		LogStart: w.logStart, LogOffsets: w.logOffsets,
		OnResult: func(r verify.Result) {
			if r.OK {
				w.say("check %s: ok (%d attempts)", r.Name, r.Attempts)
			} else {
				w.say("check %s: FAILED: %s", r.Name, r.Message)
			}
		}}
	return verify.Error(verify.Run(ctx, w.cfg.ChecksFor(w.env.Name), vals.Resolve, opts))
}

// OnRotate implements rekey.Hooks.
func (w *wiring) OnRotate(ctx context.Context, env string, spec *rekey.Spec) error {
	vals, err := w.liveValues(ctx)
	if err != nil {
		return err
	}
	defer vals.Wipe()
	for i, h := range spec.Sessions.OnRotate {
		hctx, cancel := context.WithTimeout(ctx, h.Timeout)
		err := w.runHook(hctx, h, vals)
		cancel()
		if err != nil {
			return rekey.Wrap(rekey.ErrorCode(err), err, "hook #%d (rekey.yaml line %d)", i+1, h.Line)
		}
	}
	return nil
}

func (w *wiring) runHook(ctx context.Context, h rekey.Hook, vals *Values) error {
	if h.SQL != "" {
		url, err := vals.Resolve(h.Database)
		if err != nil {
			return err
		}
		p, err := postgres.ParseURL(url.RevealString())
		if err != nil {
			return rekey.Errorf(rekey.CodeInvalid, "%s is not a PostgreSQL URL", h.Database)
		}
		conn, err := postgres.Connect(ctx, p)
		if err != nil {
			return err
		}
		defer conn.Close(context.Background())
		tag, err := conn.Exec(ctx, h.SQL)
		if err != nil {
			return rekey.Errorf(rekey.CodeVerifyFailed, "sql hook failed: %s", vals.Redact(err.Error()))
		}
		w.say("on_rotate: %s (%d rows)", firstWords(h.SQL), tag.RowsAffected())
		return nil
	}
	cmd := exec.CommandContext(ctx, h.Command[0], h.Command[1:]...)
	cmd.Dir, cmd.Env = w.cfg.Dir, w.s.Environ()
	cmd.WaitDelay = 2 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		tail := strings.TrimSpace(vals.Redact(lastLines(string(out), 5)))
		e := rekey.Errorf(rekey.CodeVerifyFailed, "hook %s failed: %v", h.Command[0], err)
		if tail != "" {
			e.Hint = "its output ended with:\n    " + strings.ReplaceAll(tail, "\n", "\n    ")
		}
		return e
	}
	w.say("on_rotate: %s ok", h.Command[0])
	return nil
}

func firstWords(s string) string {
	f := strings.Fields(s)
	if len(f) > 4 {
		f = append(f[:4], "...")
	}
	return strings.Join(f, " ")
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// say narrates a step like the engine does (nowhere when it is quiet).
func (w *wiring) say(format string, args ...any) {
	if w.e.Progress != nil {
		w.e.Progress(format, args...)
	}
}

// opener is how decrypt-sample checks open values: the re-encryption
// engine's codecs (a command codec's program runs until rekey exits).
func (s *Session) opener() verify.Opener {
	return func(ds rekey.DecryptSample, key rekey.Value) (func([]byte) error, error) {
		c, err := reencrypt.NewCipher(rekey.ReencryptSpec{Codec: ds.Codec, Encoding: ds.Encoding}, key, s.stderr())
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
