// Package services restarts the services that read the secrets rekey
// rotates, and asks them for their status, by running the commands that
// rekey.yaml lists under services: (see config.Service).
//
// A command runs in Options.Dir with Options.Env (without rekey's key
// material: see rekey.ChildEnv), in a process group of its own, with its stdin empty and its stdout and stderr captured together. A
// command that outlives its timeout is sent SIGTERM, then SIGKILL after
// Options.KillGrace, and so is every process of its group. Output is never
// echoed: only the last lines of a failing command are kept, after passing
// through Options.Redact. No secret value is ever put in a command's argv
// or environment by this package (rekey.yaml holds none).
//
// A command that leaves a process running in the background (a start
// script that daemonizes) must redirect that process's output: rekey stops
// reading a command's output WaitDelay after it exits, and a background
// process still writing to it then gets SIGPIPE.
package services

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/config"
)

// Defaults of Options.
const (
	DefaultTailLines = 10
	DefaultKillGrace = 5 * time.Second
	// WaitDelay bounds the wait for a command's output to end after the
	// command exits (background processes may hold it open).
	WaitDelay = 2 * time.Second
	// maxOutput is how much of a command's output is kept (its end).
	maxOutput = 64 << 10
	// maxLine is the longest line kept in a tail.
	maxLine = 240
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
	Command  string        `json:"command,omitempty"` // config.Command.String(); rekey.yaml holds no values
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
func Affected(svcs []config.Service, changed []string, derived []rekey.Derived) []config.Service {
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
	var out []config.Service
	for _, s := range ordered(svcs) {
		if s.ConsumesAll || slices.ContainsFunc(s.Consumes, func(c string) bool { return slices.Contains(names, c) }) {
			out = append(out, s)
		}
	}
	return out
}

// ordered sorts by Order, ties in the given order.
func ordered(svcs []config.Service) []config.Service {
	out := slices.Clone(svcs)
	slices.SortStableFunc(out, func(a, b config.Service) int { return a.Order - b.Order })
	return out
}

// Restart restarts the services that consume something in changed (see
// Affected), one at a time in restart order, each with its own timeout. A
// service without a restart command is stopped, then started. It stops at
// the first failure: the later services are reported as skipped, and the
// error (code CodeVerifyFailed) names the failing service and carries the
// tail of its output in its hint. It returns one Result per command run or
// skipped.
func Restart(ctx context.Context, svcs []config.Service, changed []string, o Options) ([]Result, error) {
	return RestartAll(ctx, Affected(svcs, changed, o.Derived), o)
}

// RestartAll restarts every service of svcs, in restart order, as Restart
// does (rekey services restart).
func RestartAll(ctx context.Context, svcs []config.Service, o Options) ([]Result, error) {
	var out []Result
	var failed *Result
	for _, s := range ordered(svcs) {
		if failed != nil {
			out = append(out, o.emit(Result{Service: s.Name, Action: ActionRestart, Skipped: "not restarted: " + failed.Service + " failed", ExitCode: -1}))
			continue
		}
		steps := []struct {
			action string
			cmd    config.Command
		}{{ActionRestart, s.Restart}}
		if s.Restart.IsZero() {
			steps = []struct {
				action string
				cmd    config.Command
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
func Status(ctx context.Context, svcs []config.Service, o Options) []Result {
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
func Run(ctx context.Context, svc, action string, c config.Command, o Options) Result {
	r := Result{Service: svc, Action: action, Command: c.String(), ExitCode: -1}
	args := c.Args()
	if len(args) == 0 {
		r.Err = "no " + action + " command"
		return r
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = config.DefaultServiceTimeout
	}
	grace := o.KillGrace
	if grace <= 0 {
		grace = DefaultKillGrace
	}
	out := &tail{}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = o.Dir
	cmd.Env = o.Env
	if cmd.Env == nil {
		cmd.Env = os.Environ()
	}
	cmd.Env = rekey.ChildEnv(cmd.Env)
	cmd.Stdin = nil
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = WaitDelay
	start := time.Now()
	if err := cmd.Start(); err != nil {
		r.Duration = time.Since(start)
		r.Err = "cannot start: " + startErr(err)
		return r
	}
	pgid := cmd.Process.Pid
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var err error
	var why string
	select {
	case err = <-done:
	case <-timer.C:
		why = fmt.Sprintf("timed out after %s", timeout)
	case <-ctx.Done():
		why = "interrupted"
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			why = "timed out (deadline reached)"
		}
	}
	if why != "" {
		r.TimedOut = why != "interrupted"
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case err = <-done:
		case <-time.After(grace):
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			err = <-done
		}
		// The leader is gone; the rest of its group goes too.
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	}
	r.Duration = time.Since(start)
	if ps := cmd.ProcessState; ps != nil {
		r.ExitCode = ps.ExitCode()
	}
	switch {
	case why != "":
		r.Err = why + ": process group killed"
	case err == nil || errors.Is(err, exec.ErrWaitDelay):
		r.OK = true
	default:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			r.Err = ee.ProcessState.String() // "exit status 3", "signal: killed"
		} else {
			r.Err = "wait: " + err.Error()
		}
	}
	if !r.OK {
		r.Tail = out.lines(o.TailLines, o.Redact)
	}
	return r
}

// startErr describes why a command did not start, without its argv.
func startErr(err error) string {
	var pe *os.PathError
	var ee *exec.Error
	switch {
	case errors.As(err, &ee):
		return ee.Err.Error() // "executable file not found in $PATH"
	case errors.As(err, &pe):
		return pe.Err.Error()
	}
	return err.Error()
}

// tail keeps the last maxOutput bytes written to it.
type tail struct {
	mu        sync.Mutex
	buf       []byte
	truncated bool
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(p)
	t.buf = append(t.buf, p...)
	if len(t.buf) > maxOutput {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-maxOutput:]...)
		t.truncated = true
	}
	return n, nil
}

// lines returns the last n non-empty lines, redacted, each cut to maxLine.
// When the beginning of the output was dropped, its first (partial) line is
// dropped too: a secret cut in half would escape redaction.
func (t *tail) lines(n int, redact func(string) string) []string {
	t.mu.Lock()
	b := bytes.Clone(t.buf)
	truncated := t.truncated
	t.mu.Unlock()
	if n <= 0 {
		n = DefaultTailLines
	}
	text := string(b)
	if truncated {
		if i := strings.IndexByte(text, '\n'); i >= 0 {
			text = text[i+1:]
		} else {
			text = ""
		}
	}
	if redact != nil {
		text = redact(text)
	}
	var out []string
	for _, l := range strings.Split(strings.ReplaceAll(text, "\r\n", "\n"), "\n") {
		l = strings.TrimRight(l, " \t\r")
		if l == "" {
			continue
		}
		out = append(out, l)
	}
	if len(out) > n {
		out = out[len(out)-n:]
	}
	for i, l := range out {
		if len(l) > maxLine {
			out[i] = strings.ToValidUTF8(l[:maxLine], "") + "…"
		}
	}
	return out
}
