package notify

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/textsafe"
)

// Command runs a program (an argv, no shell) with the message's JSON on its
// stdin, in Dir, with Env less rekey's key material (rekey.ChildEnv), in a
// process group of its own that is killed when it outlives the timeout. A
// non-zero exit is a failure that shows the first line of its stderr,
// redacted. Nothing of the message is put in its argv or environment.
type Command struct {
	Base
	Argv []string
	Dir  string
	Env  []string // the environment (less key material); nil: an empty one
}

// commandGrace is the time between SIGTERM and SIGKILL on a timeout.
const commandGrace = 2 * time.Second

// maxStderr is how much of a command's stderr is kept (its start).
const maxStderr = 16 << 10

// NewCommand is the command channel.
func NewCommand(b Base, argv []string, dir string, env []string) (*Command, error) {
	if len(argv) == 0 || argv[0] == "" {
		return nil, rekey.Errorf(rekey.CodeInvalid, "command %s: no program to run", textsafe.Quote(b.ChannelName)).
			WithHint("write command: [PROGRAM, ARGS...]")
	}
	return &Command{Base: b, Argv: argv, Dir: dir, Env: env}, nil
}

func (c *Command) Describe() string { return textsafe.Quote("command " + c.Argv[0]) }

func (c *Command) Send(ctx context.Context, m Message) error {
	_, err := c.Deliver(ctx, m)
	return err
}

func (c *Command) Deliver(ctx context.Context, m Message) (string, error) {
	body, err := m.Encode()
	if err != nil {
		return "", err
	}
	stderr := &headBuf{max: maxStderr}
	cmd := exec.Command(c.Argv[0], c.Argv[1:]...)
	cmd.Dir = c.Dir
	cmd.Env = rekey.ChildEnv(c.Env)
	cmd.Stdin = bytes.NewReader(append(body, '\n'))
	cmd.Stdout = nil // discarded
	cmd.Stderr = stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = commandGrace
	if err := cmd.Start(); err != nil {
		var ee *exec.Error
		why := err.Error()
		if errors.As(err, &ee) {
			why = ee.Err.Error()
		}
		return "", c.failf("command", "check the channel's command: its program must exist and be executable", "cannot start %s: %s", textsafe.Quote(c.Argv[0]), textsafe.Lines(why))
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	timer := time.NewTimer(c.timeout())
	defer timer.Stop()
	var why string
	select {
	case err = <-done:
	case <-timer.C:
		why = "timed out after " + c.timeout().String()
	case <-ctx.Done():
		why = "interrupted"
	}
	if why != "" {
		killGroup(cmd, done)
		return "", c.failf("command", "make the command finish sooner, or raise the channel's timeout", "%s %s: process group killed", textsafe.Quote(c.Argv[0]), why)
	}
	if err != nil && !errors.Is(err, exec.ErrWaitDelay) {
		status := err.Error()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			status = ee.ProcessState.String()
		}
		msg := textsafe.Quote(c.Argv[0]) + " failed (" + status + ")"
		if l := firstLine(c.redact(stderr.String())); l != "" {
			msg += ": " + textsafe.Quote(l)
		}
		return "", c.failf("command", "run the command by hand with a message on its stdin (rekey notify test shows the JSON in the README)", "%s", msg)
	}
	return "exit 0", nil
}

// killGroup ends the command's process group: SIGTERM, then SIGKILL.
func killGroup(cmd *exec.Cmd, done <-chan error) {
	pgid := cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(commandGrace):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-done
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
}

// firstLine is the first non-empty line of s, at most 240 bytes.
func firstLine(s string) string {
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			if len(l) > 240 {
				l = strings.ToValidUTF8(l[:240], "") + "…"
			}
			return l
		}
	}
	return ""
}

// headBuf keeps the first max bytes written to it.
type headBuf struct {
	mu  sync.Mutex
	buf []byte
	max int
}

func (h *headBuf) Write(p []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if room := h.max - len(h.buf); room > 0 {
		h.buf = append(h.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (h *headBuf) String() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return string(h.buf)
}
