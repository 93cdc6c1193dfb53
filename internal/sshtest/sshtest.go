// Package sshtest starts real OpenSSH servers (the distribution's sshd) for
// tests: each on a loopback port of its own, with its own host key, as the
// user running the tests, and the client files that reach it (a key, a
// known_hosts holding its host key, an ssh_config). Tests of remote hosts
// use it as pgtest is used for PostgreSQL: absent sshd skips locally and
// fails in CI (REKEY_TEST_DISALLOW_SKIP=1); scripts/test installs
// openssh-server.
package sshtest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rekeyhq/rekey/internal/pgcluster"
)

// Sshd is the OpenSSH server the tests run.
const Sshd = "/usr/sbin/sshd"

// Server is one running sshd: a "host".
type Server struct {
	Name string
	// Dir is the server's folder (keys, config, log); Home is a folder
	// for the host's files (its .env).
	Dir, Home string
	Port      int
	// User is who logs in (the user running the tests).
	User string
	// ClientConfig is an ssh_config (-F) with the client key and a
	// known_hosts that holds this server's host key.
	ClientConfig string
	// KnownHosts is that known_hosts file; HostKeyPub the host's public key line.
	KnownHosts, HostKeyPub string
	cmd                    *exec.Cmd
	uid, gid               int // the deploy user's, or -1
}

// DeployUser is who logs in to the test servers when the tests run as
// root (scripts/test creates it, with /bin/sh): root's own shell start-up
// files would run on every remote command, and a deploy user is what
// production uses.
const DeployUser = "rekey-deploy"

// WriteFile writes a file in the host's Home, owned by the user who logs
// in, and returns its path.
func (s *Server) WriteFile(tb testing.TB, name, content string, mode os.FileMode) string {
	tb.Helper()
	p := filepath.Join(s.Home, name)
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		tb.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		tb.Fatal(err)
	}
	if s.uid >= 0 {
		if err := os.Chown(p, s.uid, s.gid); err != nil {
			tb.Fatal(err)
		}
	}
	return p
}

// Start starts an sshd named name, stopped when tb ends.
func Start(tb testing.TB, name string) *Server {
	tb.Helper()
	if _, err := os.Stat(Sshd); err != nil {
		msg := fmt.Sprintf("no OpenSSH server at %s (apt-get install openssh-server; scripts/test installs it)", Sshd)
		if os.Getenv(pgcluster.DisallowSkipEnv) == "1" {
			tb.Fatalf("%s; %s=1 forbids skipping", msg, pgcluster.DisallowSkipEnv)
		}
		tb.Skip(msg)
	}
	u, err := user.Current()
	if err != nil {
		tb.Fatal(err)
	}
	if os.Geteuid() == 0 {
		// sshd run as root wants its privilege separation folder.
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	dir := tb.TempDir()
	s := &Server{Name: name, Dir: dir, Home: filepath.Join(dir, "home"), User: u.Username, uid: -1, gid: -1}
	if err := os.MkdirAll(s.Home, 0o700); err != nil {
		tb.Fatal(err)
	}
	if d, err := user.Lookup(DeployUser); err == nil && os.Geteuid() == 0 {
		s.asDeployUser(tb, d)
	}
	keygen := func(path string) {
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "rekey-test-"+name, "-f", path).CombinedOutput(); err != nil {
			tb.Fatalf("ssh-keygen: %v\n%s", err, out)
		}
	}
	keygen(filepath.Join(dir, "host_key"))
	keygen(filepath.Join(dir, "client_key"))
	pub, err := os.ReadFile(filepath.Join(dir, "host_key.pub"))
	if err != nil {
		tb.Fatal(err)
	}
	f := strings.Fields(string(pub))
	s.HostKeyPub = f[0] + " " + f[1]
	cpub, err := os.ReadFile(filepath.Join(dir, "client_key.pub"))
	if err != nil {
		tb.Fatal(err)
	}
	write(tb, filepath.Join(dir, "authorized_keys"), string(cpub), 0o644) // sshd reads it as the user

	s.serve(tb)
	tb.Cleanup(func() {
		s.cmd.Process.Kill()
		s.cmd.Wait()
	})
	s.KnownHosts = filepath.Join(dir, "known_hosts")
	write(tb, s.KnownHosts, fmt.Sprintf("[127.0.0.1]:%d %s\n", s.Port, s.HostKeyPub), 0o600)
	s.ClientConfig = filepath.Join(dir, "ssh_config")
	write(tb, s.ClientConfig, fmt.Sprintf(`Host *
  IdentityFile %s
  IdentitiesOnly yes
  IdentityAgent none
  UserKnownHostsFile %s
  GlobalKnownHostsFile /dev/null
`, filepath.Join(dir, "client_key"), s.KnownHosts), 0o600)
	return s
}

// serve writes sshd's config for a free port and starts it, until it
// listens (three tries: a port taken meanwhile).
func (s *Server) serve(tb testing.TB) {
	tb.Helper()
	dir := s.Dir
	for attempt := 0; ; attempt++ {
		s.Port = freePort(tb)
		cfg := fmt.Sprintf(`Port %d
ListenAddress 127.0.0.1
HostKey %s
PidFile %s
AuthorizedKeysFile %s
StrictModes no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin prohibit-password
AllowUsers %s
LogLevel ERROR
`, s.Port, filepath.Join(dir, "host_key"), filepath.Join(dir, "sshd.pid"), filepath.Join(dir, "authorized_keys"), s.User)
		write(tb, filepath.Join(dir, "sshd_config"), cfg, 0o600)
		logf, err := os.Create(filepath.Join(dir, "sshd.log"))
		if err != nil {
			tb.Fatal(err)
		}
		s.cmd = exec.Command(Sshd, "-D", "-e", "-f", filepath.Join(dir, "sshd_config"))
		s.cmd.Stdout, s.cmd.Stderr = logf, logf
		if err := s.cmd.Start(); err != nil {
			tb.Fatalf("start sshd: %v", err)
		}
		logf.Close()
		if waitListening(s.Port, 10*time.Second) {
			break
		}
		s.cmd.Process.Kill()
		s.cmd.Wait()
		if attempt == 2 {
			log, _ := os.ReadFile(filepath.Join(dir, "sshd.log"))
			tb.Fatalf("sshd did not listen on 127.0.0.1:%d:\n%s", s.Port, log)
		}
	}
}

// asDeployUser makes d the user who logs in (as root: /bin/sh, no
// start-up files); it must reach Home through the test's folders.
func (s *Server) asDeployUser(tb testing.TB, d *user.User) {
	tb.Helper()
	s.User = DeployUser
	s.uid, _ = strconv.Atoi(d.Uid)
	s.gid, _ = strconv.Atoi(d.Gid)
	for _, p := range []string{filepath.Dir(s.Dir), s.Dir} {
		if err := os.Chmod(p, 0o711); err != nil {
			tb.Fatal(err)
		}
	}
	if err := os.Chown(s.Home, s.uid, s.gid); err != nil {
		tb.Fatal(err)
	}
}

// Dest is the server as an ssh destination: user@127.0.0.1:PORT.
func (s *Server) Dest() string { return s.User + "@127.0.0.1:" + strconv.Itoa(s.Port) }

// Forget empties the client's known_hosts: the host key becomes unknown.
func (s *Server) Forget(tb testing.TB) { write(tb, s.KnownHosts, "", 0o600) }

// Impersonate records another key for the host in known_hosts: the host's
// real key then reads as changed (a man in the middle, or a reinstall).
func (s *Server) Impersonate(tb testing.TB) {
	tb.Helper()
	other := filepath.Join(tb.TempDir(), "other_key")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", other).CombinedOutput(); err != nil {
		tb.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	pub, err := os.ReadFile(other + ".pub")
	if err != nil {
		tb.Fatal(err)
	}
	f := strings.Fields(string(pub))
	write(tb, s.KnownHosts, fmt.Sprintf("[127.0.0.1]:%d %s %s\n", s.Port, f[0], f[1]), 0o600)
}

func write(tb testing.TB, path, content string, mode os.FileMode) {
	tb.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		tb.Fatal(err)
	}
}

func freePort(tb testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func waitListening(port int, d time.Duration) bool {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second); err == nil {
			c.Close()
			return true
		}
	}
	return false
}

// ClientConfig writes, in dir, one ssh_config that reaches every server
// of servers (each one's client key, and known_hosts holding each host
// key), as REKEY_SSH_CONFIG for a project with several hosts.
func ClientConfig(tb testing.TB, dir string, servers ...*Server) string {
	tb.Helper()
	var ids, known []string
	for _, s := range servers {
		ids = append(ids, "  IdentityFile "+filepath.Join(s.Dir, "client_key"))
		known = append(known, s.KnownHosts)
	}
	p := filepath.Join(dir, "ssh_config")
	write(tb, p, "Host *\n"+strings.Join(ids, "\n")+"\n  IdentitiesOnly yes\n  IdentityAgent none\n  UserKnownHostsFile "+strings.Join(known, " ")+"\n  GlobalKnownHostsFile /dev/null\n", 0o600)
	return p
}
