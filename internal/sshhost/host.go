// Package sshhost reaches remote hosts with the system OpenSSH client
// (ssh), and publishes to a .env file on them with the same guarantees as
// a local one (Target).
//
// Why the system ssh and not golang.org/x/crypto/ssh: people already have
// their hosts set up for it, and rekey must behave as `ssh HOST` does for
// them: ~/.ssh/config aliases, Include, ProxyJump, certificates, the
// agent, FIDO keys and known_hosts (hashed or not). A library would
// re-implement each of these, or miss some. rekey forces only what keeps
// it safe: BatchMode (no prompt), StrictHostKeyChecking=yes (an unknown or
// changed host key is refused, never accepted silently, whatever the
// user's config says) and no host key update.
//
// No value ever appears in a command line, on either side: the remote
// commands are fixed scripts whose arguments are paths, and values travel
// on stdin (and a .env's content on stdout, inside the SSH channel).
package sshhost

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/rekeyhq/rekey"
)

// Host is one remote machine, reached as `ssh Dest` would.
type Host struct {
	// Name is how rekey.yaml names the host (messages).
	Name string
	// Dest is user@host, user@host:port, [v6addr]:port or an alias of the
	// user's OpenSSH config.
	Dest string
	// SSH is the ssh client ("" = ssh on PATH).
	SSH string
	// ConfigFile is ssh's -F (""  = the user's ~/.ssh/config).
	ConfigFile string
	// Options are extra -o options (KEY=VALUE), after rekey's own.
	Options []string
	// Env is ssh's environment (SSH_AUTH_SOCK, HOME); nil: rekey's own.
	// rekey's key material is removed from it either way.
	Env []string
	// Timeout bounds one remote command (0 = DefaultTimeout).
	Timeout time.Duration
	// ControlDir, when set, is a private folder (0700) for the socket of
	// one master connection per host: the commands of a rekey run share
	// it (one handshake per host, not one per command). Close ends it.
	ControlDir string
}

// DefaultTimeout bounds one remote command, connection included.
const DefaultTimeout = 60 * time.Second

// ErrUnreachable is wrapped by the error of a host that could not be
// reached (name, network, refused, timed out).
var ErrUnreachable = errors.New("host unreachable")

// ErrHostKey is wrapped by the error of a host whose key is not known or
// has changed.
var ErrHostKey = errors.New("host key not verified")

// Result is what a remote command did.
type Result struct {
	Stdout []byte
	Stderr string
	Exit   int
}

// safeOptions are forced on every connection, after the user's config has
// been read (ssh takes the first value of each option: -o comes first).
var safeOptions = []string{
	"BatchMode=yes",
	"StrictHostKeyChecking=yes",
	"UpdateHostKeys=no",
	"ConnectTimeout=10",
	"ServerAliveInterval=5",
	"ServerAliveCountMax=3",
	"LogLevel=ERROR",
	"PermitLocalCommand=no",
	"ClearAllForwardings=yes",
}

// args is ssh's command line for remote command cmd.
func (h *Host) args(cmd string) ([]string, error) {
	dest, port, err := splitDest(h.Dest)
	if err != nil {
		return nil, err
	}
	a := []string{"-T", "-e", "none", "-x", "-a"}
	if h.ConfigFile != "" {
		a = append(a, "-F", h.ConfigFile)
	}
	for _, o := range safeOptions {
		a = append(a, "-o", o)
	}
	if h.ControlDir != "" {
		// The master lingers 10s at most if Close is never called (rekey
		// killed): the host key was verified when it connected.
		a = append(a, "-o", "ControlMaster=auto", "-o", "ControlPath="+filepath.Join(h.ControlDir, "%C"), "-o", "ControlPersist=10")
	}
	for _, o := range h.Options {
		a = append(a, "-o", o)
	}
	if port != "" {
		a = append(a, "-p", port)
	}
	return append(a, "--", dest, cmd), nil
}

// splitDest separates an explicit port from dest: user@host:port and
// [v6]:port; an alias or host without one is left to ssh's config.
func splitDest(dest string) (host, port string, err error) {
	if dest == "" || strings.HasPrefix(dest, "-") || strings.ContainsAny(dest, " \t\n'\"\\;|&$`") {
		return "", "", rekey.Errorf(rekey.CodeInvalid, "ssh destination %q is not user@host[:port] or an alias", dest)
	}
	user, hp, hasUser := strings.Cut(dest, "@")
	if !hasUser {
		hp, user = user, ""
	}
	if h, p, err := net.SplitHostPort(hp); err == nil {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return "", "", rekey.Errorf(rekey.CodeInvalid, "ssh destination %q: port %q is not 1-65535", dest, p)
		}
		hp, port = h, p
	} else if strings.Count(hp, ":") == 1 {
		return "", "", rekey.Errorf(rekey.CodeInvalid, "ssh destination %q: %v", dest, err)
	}
	if hasUser {
		return user + "@" + hp, port, nil
	}
	return hp, port, nil
}

// Run runs script on the host as `sh -c script rekey args...`, with stdin
// (nil: none), and returns what it did. An error is ssh's own failure
// (unreachable, host key, authentication); the script's exit status is
// Result.Exit. Arguments are quoted for the remote shell; they are paths
// and names, never values.
func (h *Host) Run(ctx context.Context, script string, stdin []byte, args ...string) (Result, error) {
	q := []string{"sh", "-c", quote(script), "rekey"}
	for _, a := range args {
		q = append(q, quote(a))
	}
	argv, err := h.args(strings.Join(q, " "))
	if err != nil {
		return Result{}, err
	}
	timeout := h.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	bin := h.SSH
	if bin == "" {
		bin = "ssh"
	}
	cmd := exec.CommandContext(ctx, bin, argv...)
	if h.Env != nil {
		cmd.Env = rekey.ChildEnv(h.Env)
	} else {
		cmd.Env = rekey.ChildEnv(cmd.Environ())
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &limited{b: &stderr, max: 64 << 10}
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	cmd.WaitDelay = 5 * time.Second
	err = cmd.Run()
	r := Result{Stdout: stdout.Bytes(), Stderr: strings.TrimSpace(stderr.String())}
	var ee *exec.ExitError
	switch {
	case err == nil:
		return r, nil
	case ctx.Err() != nil:
		return r, rekey.Wrap(rekey.CodeConflict, ErrUnreachable, "host %s (%s): no answer within %s", h.Name, h.Dest, timeout).
			WithHint("check that `ssh %s true` answers", h.Dest)
	case errors.As(err, &ee) && ee.ExitCode() == 255:
		return r, h.sshError(r.Stderr)
	case errors.As(err, &ee):
		r.Exit = ee.ExitCode()
		return r, nil
	}
	return r, rekey.Wrap(rekey.CodeInternal, err, "run ssh for host %s", h.Name).WithHint("is OpenSSH's client (ssh) installed?")
}

// Close ends the host's master connection, if one was opened: the next
// rekey run connects anew, and verifies the host key again.
func (h *Host) Close() {
	if h.ControlDir == "" {
		return
	}
	argv, err := h.args("")
	if err != nil {
		return
	}
	// -O exit DEST: the same options, without the remote command.
	argv = append([]string{"-O", "exit"}, argv[:len(argv)-1]...)
	bin := h.SSH
	if bin == "" {
		bin = "ssh"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, argv...)
	cmd.Env = rekey.ChildEnv(cmd.Environ())
	if h.Env != nil {
		cmd.Env = rekey.ChildEnv(h.Env)
	}
	_ = cmd.Run() // no master: nothing to end
}

// sshError is ssh's own failure (exit 255), by what it printed.
func (h *Host) sshError(stderr string) error {
	last := lastLine(stderr)
	switch {
	case strings.Contains(stderr, "REMOTE HOST IDENTIFICATION HAS CHANGED"):
		return rekey.Wrap(rekey.CodeUnsafe, ErrHostKey, "host %s (%s): its host key has CHANGED since it was recorded in known_hosts: refused", h.Name, h.Dest).
			WithHint("someone may be intercepting the connection; if the host was reinstalled, check its new key's fingerprint out of band, then `ssh-keygen -R HOST` and connect once with ssh")
	case strings.Contains(stderr, "Host key verification failed"), strings.Contains(stderr, "No ") && strings.Contains(stderr, "host key is known"):
		return rekey.Wrap(rekey.CodeUnsafe, ErrHostKey, "host %s (%s): its host key is not in known_hosts: refused (rekey never accepts an unknown key)", h.Name, h.Dest).
			WithHint("check the host's key fingerprint out of band, then connect once with `ssh %s` to record it", h.Dest)
	case strings.Contains(stderr, "Permission denied"):
		return rekey.Errorf(rekey.CodeAuth, "host %s (%s): SSH authentication refused: %s", h.Name, h.Dest, last).
			WithHint("`ssh %s true` must log in without a prompt (a key in the agent or IdentityFile)", h.Dest)
	}
	return rekey.Wrap(rekey.CodeConflict, ErrUnreachable, "host %s (%s) unreachable: %s", h.Name, h.Dest, last).
		WithHint("check that `ssh %s true` answers", h.Dest)
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	if s == "" {
		return "ssh failed"
	}
	return s
}

// quote quotes s for a POSIX shell.
func quote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// limited keeps the first max bytes written to it.
type limited struct {
	b   *bytes.Buffer
	max int
}

func (l *limited) Write(p []byte) (int, error) {
	if room := l.max - l.b.Len(); room > 0 {
		l.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// Fail is the error of a remote script that exited non-zero: what it said.
func (h *Host) Fail(what string, r Result) error {
	msg := lastLine(r.Stderr)
	if r.Stderr == "" {
		msg = fmt.Sprintf("exit status %d", r.Exit)
	}
	return rekey.Errorf(rekey.CodeInternal, "host %s: %s: %s", h.Name, what, msg)
}
