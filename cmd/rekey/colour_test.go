package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"testing"
	"unsafe"
)

func TestColourEnabled(t *testing.T) {
	for _, c := range []struct {
		tty          bool
		noColor, trm string
		want         bool
	}{
		{tty: true, trm: "xterm-256color", want: true},
		{tty: true, want: true}, // TERM unset: still a terminal
		{tty: false, trm: "xterm-256color"},
		{tty: true, noColor: "1", trm: "xterm"},
		{tty: true, noColor: "0", trm: "xterm"}, // any non-empty value
		{tty: true, trm: "dumb"},
	} {
		env := map[string]string{"NO_COLOR": c.noColor, "TERM": c.trm}
		if got := colourEnabled(c.tty, func(k string) string { return env[k] }); got != c.want {
			t.Errorf("tty=%v NO_COLOR=%q TERM=%q: colour %v, want %v", c.tty, c.noColor, c.trm, got, c.want)
		}
	}
}

// openPTY opens a pseudo-terminal: rekey writes to slave as to a terminal,
// the test reads what it wrote from master.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal here: %v", err)
	}
	var unlock int32
	var n uint32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, m.Fd(), syscall.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); e != 0 {
		t.Fatal(e)
	}
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, m.Fd(), syscall.TIOCGPTN, uintptr(unsafe.Pointer(&n))); e != 0 {
		t.Fatal(e)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m, s
}

// onTerminal runs rekey in-process with stdout on a pseudo-terminal and
// returns what the terminal received.
func onTerminal(t *testing.T, p *inProject, env map[string]string, args ...string) string {
	t.Helper()
	master, slave := openPTY(t)
	got := make(chan []byte)
	go func() { b, _ := io.ReadAll(master); got <- b }() // ends with EIO once slave is closed
	e := map[string]string{}
	for k, v := range p.env {
		e[k] = v
	}
	for k, v := range env {
		e[k] = v
	}
	var errb bytes.Buffer
	(&Main{Stdin: strings.NewReader(""), Stdout: slave, Stderr: &errb, Dir: p.dir, Env: e}).Run(context.Background(), args)
	slave.Close()
	return string(<-got)
}

// TestColourOnTerminalOnly: states are coloured on a terminal, and never
// with NO_COLOR, TERM=dumb, --json, or in a pipe.
func TestColourOnTerminalOnly(t *testing.T) {
	p := &inProject{t: t, dir: t.TempDir(), env: map[string]string{
		"REKEY_MASTER_KEY": testMasterKey, "XDG_CONFIG_HOME": t.TempDir(), "XDG_STATE_HOME": t.TempDir(),
		"REKEY_ACTOR": "colour-test", "NO_COLOR": "", "TERM": "xterm-256color",
	}}
	p.init("JWT_SECRET=" + strings.Repeat("c2VjcmV0", 12) + "\nPORT=8080\n")

	if out := onTerminal(t, p, nil, "status"); !strings.Contains(out, ansiGreen+"ok"+ansiReset) {
		t.Errorf("status on a terminal: the state is not green:\n%q", out)
	}
	if out := onTerminal(t, p, nil, "doctor"); !strings.Contains(out, "PASS"+ansiReset) {
		t.Errorf("doctor on a terminal: no coloured PASS:\n%q", out)
	}
	for name, c := range map[string]struct {
		env  map[string]string
		args []string
	}{
		"NO_COLOR":  {map[string]string{"NO_COLOR": "1"}, []string{"status"}},
		"TERM=dumb": {map[string]string{"TERM": "dumb"}, []string{"status"}},
		"--json":    {nil, []string{"status", "--json"}},
	} {
		if out := onTerminal(t, p, c.env, c.args...); strings.Contains(out, "\x1b[") || !strings.Contains(out, "JWT_SECRET") {
			t.Errorf("%s: want uncoloured output, got:\n%q", name, out)
		}
	}
	// A pipe is no terminal.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan []byte)
	go func() { b, _ := io.ReadAll(r); got <- b }()
	(&Main{Stdin: strings.NewReader(""), Stdout: w, Stderr: io.Discard, Dir: p.dir, Env: p.env}).Run(context.Background(), []string{"status"})
	w.Close()
	if out := string(<-got); strings.Contains(out, "\x1b[") || !strings.Contains(out, "JWT_SECRET") {
		t.Errorf("status into a pipe: %q", out)
	}
}
