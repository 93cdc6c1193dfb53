// Package proc runs the commands rekey.yaml lists (a service's restart, a
// check's command): the one way rekey starts a program it does not own.
//
// A command runs in Options.Dir with Options.Env (without rekey's key
// material: see rekey.ChildEnv), in a process group of its own, with its
// stdin empty and its stdout and stderr captured together. A command that
// outlives its timeout is sent SIGTERM, then SIGKILL after
// Options.KillGrace, and so is every process of its group. Output is never
// echoed: only the last lines of a failing command are kept, after passing
// through Options.Redact. No secret value is ever put in a command's argv
// or environment by this package (rekey.yaml holds none).
//
// A command that leaves a process running in the background (a start
// script that daemonizes) must redirect that process's output: rekey stops
// reading a command's output WaitDelay after it exits, and a background
// process still writing to it then gets SIGPIPE.
package proc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rekeyhq/rekey"
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

// Options say how a command runs.
type Options struct {
	// Dir is the working directory: the project folder (config.Config.Dir).
	Dir string
	// Env is the command's environment; nil means rekey's own. Either way
	// rekey's key material is removed from it (rekey.ChildEnv).
	Env []string
	// Redact is applied to every output line kept (the output of a command
	// could hold a secret). nil keeps lines as they are.
	Redact func(string) string
	// TailLines is how many last lines of a failing command are kept
	// (default DefaultTailLines).
	TailLines int
	// KillGrace is the time between SIGTERM and SIGKILL when a command
	// times out (default DefaultKillGrace).
	KillGrace time.Duration
	// Stdin is written to the command's standard input, then closed (nil:
	// no input). A secret goes here, never in argv or Env; the caller
	// clears it once Run returns.
	Stdin []byte
}

// Result is the outcome of one command.
type Result struct {
	OK       bool
	ExitCode int // -1 when it did not exit by itself
	TimedOut bool
	Duration time.Duration
	// Err says what went wrong, shortly: "exit status 3", "timed out after
	// 1m0s: process group killed", "cannot start: executable file not found".
	Err string
	// Tail holds the last lines of the command's output, redacted, when it
	// failed.
	Tail []string
}

// Run runs c and reports how it went; what names the command in the error
// of an empty one ("no restart command"). A command without a timeout of
// its own gets rekey.DefaultServiceTimeout.
func Run(ctx context.Context, what string, c rekey.Command, o Options) Result {
	r := Result{ExitCode: -1}
	args := c.Args()
	if len(args) == 0 {
		r.Err = "no " + what + " command"
		return r
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = rekey.DefaultServiceTimeout
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
	if o.Stdin != nil {
		cmd.Stdin = bytes.NewReader(o.Stdin)
	}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = WaitDelay
	start := time.Now()
	if err := cmd.Start(); err != nil {
		r.Duration = time.Since(start)
		r.Err = "cannot start: " + startErr(err)
		return r
	}
	err, why := wait(ctx, cmd, timeout, o.KillGrace)
	r.Duration = time.Since(start)
	if ps := cmd.ProcessState; ps != nil {
		r.ExitCode = ps.ExitCode()
	}
	r.TimedOut = why != "" && why != "interrupted"
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

// wait waits for the started cmd to exit. When it outlives timeout or ctx
// ends first, its process group is sent SIGTERM, then SIGKILL after grace
// (default DefaultKillGrace), and why says which ("timed out after 1m0s",
// "interrupted").
func wait(ctx context.Context, cmd *exec.Cmd, timeout, grace time.Duration) (err error, why string) {
	if grace <= 0 {
		grace = DefaultKillGrace
	}
	pgid := cmd.Process.Pid
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case err = <-done:
		return err, ""
	case <-timer.C:
		why = fmt.Sprintf("timed out after %s", timeout)
	case <-ctx.Done():
		why = "interrupted"
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			why = "timed out (deadline reached)"
		}
	}
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case err = <-done:
	case <-time.After(grace):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		err = <-done
	}
	// The leader is gone; the rest of its group goes too.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	return err, why
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

// Started returns an opaque mark of when process pid started (its start
// time in clock ticks since boot, from /proc/PID/stat on Linux): with the
// pid it names one process, not a later one that reused the pid. ok is
// false when it cannot be read (the process is gone, or not Linux).
func Started(pid int) (mark uint64, ok bool) {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	// pid (comm) state ppid ...: comm may hold spaces and parentheses, so
	// the fields are counted after the last ')'; starttime is field 22.
	i := bytes.LastIndexByte(raw, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(raw[i+1:]))
	if len(f) < 20 {
		return 0, false
	}
	n, err := strconv.ParseUint(f[19], 10, 64)
	return n, err == nil
}

// Alive reports whether the process pid that started at mark (Started)
// still runs.
func Alive(pid int, mark uint64) bool {
	m, ok := Started(pid)
	return ok && m == mark
}
