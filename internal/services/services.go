// Package services restarts the services that read the secrets rekey
// rotates, and asks them for their status, by running the commands that
// rekey.yaml lists under services: (see rekey.Service). The commands run
// through internal/proc: in the project folder, in a process group of their
// own, killed with it on timeout, their output kept redacted and only when
// they fail.
package services

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"time"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/proc"
)

// Defaults of Options.
const (
	DefaultTailLines = proc.DefaultTailLines
	DefaultKillGrace = proc.DefaultKillGrace
)

// Options say how commands run.
type Options struct {
	// Dir is the working directory: the project folder (config.Config.Dir).
	Dir string
	// Env is the commands' environment; nil means rekey's own. Either way
	// rekey's key material is removed from it (rekey.ChildEnv).
	Env []string
	// Derived maps derived values to the secrets they are computed from, so
	// that a service consuming DATABASE_URL restarts when DATABASE_PASSWORD
	// changes (config.Config.DerivedFor).
	Derived []rekey.Derived
	// Redact is applied to every output line kept (the output of a command
	// could hold a secret). nil keeps lines as they are.
	Redact func(string) string
	// TailLines is how many last lines of a failing command are kept
	// (default DefaultTailLines).
	TailLines int
	// KillGrace is the time between SIGTERM and SIGKILL when a command
	// times out (default DefaultKillGrace).
	KillGrace time.Duration
	// OnResult, when set, is called with each result as soon as it is known.
	OnResult func(Result)
}

// The actions of a Result.
const (
	ActionRestart = "restart"
	ActionStop    = "stop"
	ActionStart   = "start"
	ActionStatus  = "status"
)

// Result is the outcome of one command.
type Result struct {
	Service  string        `json:"service"`
	Action   string        `json:"action"`            // restart, stop, start, status
	Command  string        `json:"command,omitempty"` // rekey.Command.String(); rekey.yaml holds no values
	OK       bool          `json:"ok"`
	Skipped  string        `json:"skipped,omitempty"` // why the command did not run ("no status command", "an earlier service failed")
	ExitCode int           `json:"exit_code"`         // -1 when it did not exit by itself
	TimedOut bool          `json:"timed_out,omitempty"`
	Duration time.Duration `json:"-"`
	// Err says what went wrong, shortly: "exit status 3", "timed out after
	// 1m0s: process group killed", "cannot start: executable file not found".
	Err string `json:"error,omitempty"`
	// Tail holds the last lines of the command's output, redacted, when it
	// failed.
	Tail []string `json:"tail,omitempty"`
}

// MarshalJSON adds duration_ms.
func (r Result) MarshalJSON() ([]byte, error) {
	type plain Result
	return json.Marshal(struct {
		plain
		DurationMS int64 `json:"duration_ms"`
	}{plain(r), r.Duration.Milliseconds()})
}

// Affected returns the services, in restart order, that consume something
// in changed (secret or derived value names): a service consuming a derived
// value is affected when a secret its template references changed, and one
// with consumes: all by any change.
func Affected(svcs []rekey.Service, changed []string, derived []rekey.Derived) []rekey.Service {
	if len(changed) == 0 {
		return nil
	}
	names := slices.Clone(changed)
	for _, d := range derived {
		if d.Template == nil || slices.Contains(names, d.Name) {
			continue
		}
		for _, r := range d.Template.Refs() {
			if slices.Contains(changed, r) {
				names = append(names, d.Name)
				break
			}
		}
	}
	var out []rekey.Service
	for _, s := range ordered(svcs) {
		if s.ConsumesAll || slices.ContainsFunc(s.Consumes, func(c string) bool { return slices.Contains(names, c) }) {
			out = append(out, s)
		}
	}
	return out
}

// ordered sorts by Order, ties in the given order.
func ordered(svcs []rekey.Service) []rekey.Service {
	out := slices.Clone(svcs)
	slices.SortStableFunc(out, func(a, b rekey.Service) int { return a.Order - b.Order })
	return out
}

// Restart restarts the services that consume something in changed (see
// Affected), one at a time in restart order, each with its own timeout. A
// service without a restart command is stopped, then started. It stops at
// the first failure: the later services are reported as skipped, and the
// error (code CodeVerifyFailed) names the failing service and carries the
// tail of its output in its hint. It returns one Result per command run or
// skipped.
func Restart(ctx context.Context, svcs []rekey.Service, changed []string, o Options) ([]Result, error) {
	return RestartAll(ctx, Affected(svcs, changed, o.Derived), o)
}

// RestartAll restarts every service of svcs, in restart order, as Restart
// does (rekey services restart).
func RestartAll(ctx context.Context, svcs []rekey.Service, o Options) ([]Result, error) {
	var out []Result
	var failed *Result
	for _, s := range ordered(svcs) {
		if failed != nil {
			out = append(out, o.emit(Result{Service: s.Name, Action: ActionRestart, Skipped: "not restarted: " + failed.Service + " failed", ExitCode: -1}))
			continue
		}
		steps := []struct {
			action string
			cmd    rekey.Command
		}{{ActionRestart, s.Restart}}
		if s.Restart.IsZero() {
			steps = []struct {
				action string
				cmd    rekey.Command
			}{{ActionStop, s.Stop}, {ActionStart, s.Start}}
		}
		for _, st := range steps {
			r := o.emit(Run(ctx, s.Name, st.action, st.cmd, o))
			out = append(out, r)
			if !r.OK {
				failed = &out[len(out)-1]
				break
			}
		}
	}
	if failed != nil {
		return out, failure(failed)
	}
	return out, nil
}

// failure is the error of a failed command: its message names the service
// and what went wrong; its hint holds the tail of its output.
func failure(r *Result) error {
	e := rekey.Errorf(rekey.CodeVerifyFailed, "%s of service %s failed: %s", r.Action, r.Service, r.Err)
	if len(r.Tail) > 0 {
		e.Hint = "its output ended with:\n    " + strings.Join(r.Tail, "\n    ")
	} else {
		e.Hint = "run it by hand to see why: " + r.Command
	}
	return e
}

// Status runs the status command of each service, in restart order. A
// service without one is reported as skipped (and OK).
func Status(ctx context.Context, svcs []rekey.Service, o Options) []Result {
	var out []Result
	for _, s := range ordered(svcs) {
		if s.Status.IsZero() {
			out = append(out, o.emit(Result{Service: s.Name, Action: ActionStatus, OK: true, Skipped: "no status command", ExitCode: -1}))
			continue
		}
		out = append(out, o.emit(Run(ctx, s.Name, ActionStatus, s.Status, o)))
	}
	return out
}

func (o Options) emit(r Result) Result {
	if o.OnResult != nil {
		o.OnResult(r)
	}
	return r
}

// Run runs one command of service svc and reports how it went.
func Run(ctx context.Context, svc, action string, c rekey.Command, o Options) Result {
	p := proc.Run(ctx, action, c, proc.Options{Dir: o.Dir, Env: o.Env, Redact: o.Redact, TailLines: o.TailLines, KillGrace: o.KillGrace})
	return Result{Service: svc, Action: action, Command: c.String(), OK: p.OK, ExitCode: p.ExitCode, TimedOut: p.TimedOut,
		Duration: p.Duration, Err: p.Err, Tail: p.Tail}
}
