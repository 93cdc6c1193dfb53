// Package pgcluster runs a throwaway PostgreSQL cluster: initdb and pg_ctl
// from the machine's PostgreSQL, a free port on 127.0.0.1, a temporary
// folder, scram-sha-256 for every connection and every statement logged to
// LogFile. As root, the server runs as the "postgres" system user (initdb
// refuses root). Tests use it through internal/pgtest; `rekey demo
// --with-postgres` uses it directly (this package does not import testing).
package pgcluster

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrUnavailable is returned by Start when no cluster can be run on this
// machine (PostgreSQL binaries missing, or running as root without a
// postgres system user). Main turns it into skipped tests.
var ErrUnavailable = errors.New("pgtest: postgresql unavailable")

// DisallowSkipEnv names the environment variable that turns Need's skip
// into a test failure (set it to 1 in CI).
const DisallowSkipEnv = "REKEY_TEST_DISALLOW_SKIP"

const (
	startTimeout = 60 * time.Second
	stopTimeout  = 15 * time.Second
	// DefaultHBA is the pg_hba.conf line every cluster starts with.
	DefaultHBA = "host all all 127.0.0.1/32 scram-sha-256"
)

// Cluster is a throwaway PostgreSQL cluster. Start it from TestMain (one
// per test binary), stop it at the end.
type Cluster struct {
	Host          string // always 127.0.0.1
	Port          int
	Dir           string // temp dir holding data/, the socket and the log
	LogFile       string // server log (stderr of the postmaster)
	SuperUser     string // "postgres"
	SuperPassword string
	Version       string // the server's version, "17.10" (postgres --version)
	Major         int    // its major version, 17

	binDir  string
	dataDir string
	cred    *syscall.Credential
	cmd     *exec.Cmd
	logFD   *os.File
	exited  chan struct{}
	waitErr error

	stopOnce sync.Once
	stopErr  error
}

// Start creates and starts a cluster. It takes about a second.
func Start() (*Cluster, error) {
	binDir, err := findBinDir()
	if err != nil {
		return nil, err
	}
	cred, err := serverCredential()
	if err != nil {
		return nil, err
	}

	dir, err := makeDir(cred)
	if err != nil {
		return nil, err
	}
	version, major, err := serverVersion(binDir)
	if err != nil {
		return nil, err
	}
	c := &Cluster{
		Version:   version,
		Major:     major,
		Host:      "127.0.0.1",
		Dir:       dir,
		LogFile:   filepath.Join(dir, "postgres.log"),
		SuperUser: "postgres",
		binDir:    binDir,
		dataDir:   filepath.Join(dir, "data"),
		cred:      cred,
	}
	ok := false
	defer func() {
		if !ok {
			c.kill()
			os.RemoveAll(dir)
		}
	}()

	if copied, err := c.fromTemplate(); err != nil {
		return nil, err
	} else if !copied {
		if c.SuperPassword, err = randomPassword(); err != nil {
			return nil, err
		}
		if err := c.initdb(); err != nil {
			return nil, err
		}
	}
	if err := c.writeHBA(DefaultHBA); err != nil {
		return nil, err
	}

	// A free port can be taken by someone else between probing and
	// binding; try a few ports before giving up.
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		c.Port = port
		if err := c.writeConf(); err != nil {
			return nil, err
		}
		if lastErr = c.startServer(); lastErr == nil {
			ok = true
			c.recordCaller()
			return c, nil
		}
		c.kill()
		if !strings.Contains(c.logTail(), "already in use") {
			break
		}
	}
	return nil, lastErr
}

// BinDirEnv names an environment variable that, when set, is the only
// place binaries are looked for (to test another PostgreSQL version).
const BinDirEnv = "REKEY_TEST_PG_BINDIR"

// findBinDir locates the directory holding initdb and postgres: $BinDirEnv
// if set, else `pg_config --bindir`, else the newest
// /usr/lib/postgresql/*/bin, else PATH.
func findBinDir() (string, error) {
	has := func(dir string) bool {
		for _, name := range []string{"initdb", "postgres", "pg_ctl"} {
			if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.IsDir() {
				return false
			}
		}
		return true
	}
	if dir := os.Getenv(BinDirEnv); dir != "" {
		if has(dir) {
			return dir, nil
		}
		return "", fmt.Errorf("%w: no initdb, postgres and pg_ctl in %s=%s", ErrUnavailable, BinDirEnv, dir)
	}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		if dir := strings.TrimSpace(string(out)); dir != "" && has(dir) {
			return dir, nil
		}
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(matches, func(i, j int) bool { return versionOf(matches[i]) > versionOf(matches[j]) })
	for _, dir := range matches {
		if has(dir) {
			return dir, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		if dir := filepath.Dir(p); has(dir) {
			return dir, nil
		}
	}
	return "", fmt.Errorf("%w: initdb, postgres and pg_ctl not found (pg_config --bindir, /usr/lib/postgresql/*/bin, PATH)", ErrUnavailable)
}

// versionOf extracts N from /usr/lib/postgresql/N/bin (major.minor for old releases).
func versionOf(binDir string) float64 {
	v, err := strconv.ParseFloat(filepath.Base(filepath.Dir(binDir)), 64)
	if err != nil {
		return -1
	}
	return v
}

// serverCredential returns the credential to run initdb/postgres with:
// nil when not root, the postgres system user when root.
func serverCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("%w: running as root and no postgres system user to run the server as", ErrUnavailable)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("pgtest: postgres user has a non-numeric uid or gid")
	}
	if uid == 0 {
		return nil, fmt.Errorf("%w: the postgres system user is uid 0", ErrUnavailable)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}, nil
}

// makeDir creates the cluster directory, owned by the server user. The
// socket lives in it, so its path must stay short (sun_path is 108 bytes),
// and every ancestor must be searchable by the server user.
func makeDir(cred *syscall.Credential) (string, error) {
	base := os.TempDir()
	if len(base) > 60 || (cred != nil && !searchableByOthers(base)) {
		base = "/tmp"
	}
	sweepStale(base)
	dir, err := os.MkdirTemp(base, dirPrefix)
	if err != nil {
		return "", fmt.Errorf("pgtest: create temp dir: %w", err)
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			os.RemoveAll(dir)
			return "", fmt.Errorf("pgtest: chown temp dir: %w", err)
		}
	}
	return dir, nil
}

const dirPrefix = "rekey-pgtest-"

// sweepStale removes cluster directories left behind by test binaries that
// died without Stop (panic, -timeout, kill): older than an hour and with no
// live postmaster.
func sweepStale(base string) {
	dirs, _ := filepath.Glob(filepath.Join(base, dirPrefix+"*"))
	for _, dir := range dirs {
		fi, err := os.Lstat(dir)
		if err != nil || !fi.IsDir() || time.Since(fi.ModTime()) < time.Hour {
			continue
		}
		if b, err := os.ReadFile(filepath.Join(dir, "data", "postmaster.pid")); err == nil {
			line, _, _ := strings.Cut(string(b), "\n")
			if pid, err := strconv.Atoi(strings.TrimSpace(line)); err == nil && pid > 0 {
				if err := syscall.Kill(pid, 0); err == nil || errors.Is(err, syscall.EPERM) {
					continue // still running
				}
			}
		}
		_ = os.RemoveAll(dir)
	}
}

func searchableByOthers(dir string) bool {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return false
	}
	for {
		fi, err := os.Stat(dir)
		if err != nil || fi.Mode().Perm()&0o001 == 0 {
			return false
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return true
		}
		dir = parent
	}
}

func randomPassword() (string, error) {
	b := make([]byte, 18)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("pgtest: random password: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pgtest: find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// command builds a command for one of the server binaries, run as the
// server user.
func (c *Cluster) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(c.binDir, name), args...)
	cmd.Dir = c.Dir
	cmd.Env = serverEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	return cmd
}

// serverEnv is a minimal environment: no PG* variables from the caller
// leak into initdb or the server.
func serverEnv() []string {
	env := []string{"LC_ALL=C", "LANG=C", "TZ=UTC"}
	if p := os.Getenv("PATH"); p != "" {
		env = append(env, "PATH="+p)
	}
	return env
}

func (c *Cluster) initdb() error {
	// The password goes through a 0600 file owned by the server user,
	// never through argv; the file is removed as soon as initdb is done.
	pwfile := filepath.Join(c.Dir, "pwfile")
	if err := os.WriteFile(pwfile, []byte(c.SuperPassword+"\n"), 0o600); err != nil {
		return fmt.Errorf("pgtest: write pwfile: %w", err)
	}
	defer os.Remove(pwfile)
	if c.cred != nil {
		if err := os.Chown(pwfile, int(c.cred.Uid), int(c.cred.Gid)); err != nil {
			return fmt.Errorf("pgtest: chown pwfile: %w", err)
		}
	}
	cmd := c.command("initdb",
		"-D", c.dataDir,
		"-U", c.SuperUser,
		"--auth=scram-sha-256",
		"--pwfile="+pwfile,
		"--encoding=UTF8",
		"--no-locale",
		"--no-sync",
		"--wal-segsize=1", // 1 MB WAL segments: a throwaway cluster writes 15 MB less
	)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("pgtest: initdb: %w\n%s", err, out.Bytes())
	}
	return nil
}

func (c *Cluster) writeConf() error {
	// initdb wrote postgresql.conf; settings appended later win.
	base := filepath.Join(c.dataDir, "postgresql.conf")
	orig := base + ".initdb"
	if _, err := os.Stat(orig); os.IsNotExist(err) {
		if err := copyFile(base, orig); err != nil {
			return err
		}
	}
	content, err := os.ReadFile(orig)
	if err != nil {
		return fmt.Errorf("pgtest: read postgresql.conf: %w", err)
	}
	extra := fmt.Sprintf(`
# --- rekey pgtest ---
listen_addresses = '127.0.0.1'
port = %d
unix_socket_directories = '%s'
logging_collector = off
log_statement = 'all'
log_connections = off
log_min_messages = warning
fsync = off
synchronous_commit = off
full_page_writes = off
password_encryption = 'scram-sha-256'
max_connections = 50
shared_buffers = 16MB
ssl = off
`, c.Port, strings.ReplaceAll(c.Dir, "'", "''"))
	return c.writeServerFile(base, append(content, extra...))
}

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return fmt.Errorf("pgtest: read %s: %w", filepath.Base(from), err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		return fmt.Errorf("pgtest: write %s: %w", filepath.Base(to), err)
	}
	return nil
}

// writeServerFile writes a file in the data directory, owned by the server user.
func (c *Cluster) writeServerFile(path string, content []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, content, 0o600); err != nil {
		return fmt.Errorf("pgtest: write %s: %w", filepath.Base(path), err)
	}
	if c.cred != nil {
		if err := os.Chown(tmp, int(c.cred.Uid), int(c.cred.Gid)); err != nil {
			os.Remove(tmp)
			return fmt.Errorf("pgtest: chown %s: %w", filepath.Base(path), err)
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("pgtest: write %s: %w", filepath.Base(path), err)
	}
	return nil
}

func (c *Cluster) writeHBA(lines ...string) error {
	content := "# written by rekey pgtest; first matching line wins\n" + strings.Join(lines, "\n") + "\n"
	return c.writeServerFile(filepath.Join(c.dataDir, "pg_hba.conf"), []byte(content))
}

// startServer runs the postmaster as a child process whose stdout and
// stderr go to LogFile (what pg_ctl -l does). The child gets SIGKILL if the
// test binary dies without calling Stop (panic, -timeout), so no cluster
// outlives its tests.
func (c *Cluster) startServer() error {
	logFD, err := os.OpenFile(c.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("pgtest: open log file: %w", err)
	}
	cmd := c.command("postgres", "-D", c.dataDir)
	cmd.Stdout, cmd.Stderr = logFD, logFD
	cmd.SysProcAttr.Setpgid = true // keep the terminal's ^C away; Stop shuts it down
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if err := cmd.Start(); err != nil {
		logFD.Close()
		return fmt.Errorf("pgtest: start postgres: %w", err)
	}
	c.cmd, c.logFD = cmd, logFD
	c.exited = make(chan struct{})
	go func() {
		c.waitErr = cmd.Wait()
		logFD.Close()
		close(c.exited)
	}()
	return c.waitReady()
}

// waitReady polls postmaster.pid until the postmaster reports "ready" (as
// pg_ctl -w does), then checks the TCP port answers.
func (c *Cluster) waitReady() error {
	deadline := time.Now().Add(startTimeout)
	pidFile := filepath.Join(c.dataDir, "postmaster.pid")
	for {
		select {
		case <-c.exited:
			return fmt.Errorf("pgtest: postgres exited during startup (%v); log:\n%s", c.waitErr, c.logTail())
		default:
		}
		if b, err := os.ReadFile(pidFile); err == nil {
			lines := strings.Split(string(b), "\n")
			// Line 8 is the postmaster status (PostgreSQL 10 and later):
			// "ready", or "standby" for a hot standby (replica.go).
			if len(lines) >= 8 && (strings.TrimSpace(lines[7]) == "ready" || strings.TrimSpace(lines[7]) == "standby") {
				conn, err := net.DialTimeout("tcp", c.addr(), time.Second)
				if err == nil {
					conn.Close()
					return nil
				}
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pgtest: postgres not ready after %s; log:\n%s", startTimeout, c.logTail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (c *Cluster) logTail() string {
	b, _ := os.ReadFile(c.LogFile)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

func (c *Cluster) addr() string { return net.JoinHostPort(c.Host, strconv.Itoa(c.Port)) }

// kill stops a server that never became ready.
func (c *Cluster) kill() {
	if c.cmd == nil || c.cmd.Process == nil {
		return
	}
	select {
	case <-c.exited:
	default:
		_ = c.cmd.Process.Kill()
		<-c.exited
	}
	c.cmd = nil
}

// Stop shuts the server down (pg_ctl stop -m immediate) and removes Dir.
// It is safe to call more than once.
func (c *Cluster) Stop() error {
	c.stopOnce.Do(func() { c.stopErr = c.stop() })
	return c.stopErr
}

func (c *Cluster) stop() error {
	var errs []error
	if c.cmd != nil {
		select {
		case <-c.exited:
		default:
			cmd := c.command("pg_ctl", "stop", "-D", c.dataDir, "-m", "immediate", "-w", "-t", "10")
			if out, err := cmd.CombinedOutput(); err != nil {
				errs = append(errs, fmt.Errorf("pgtest: pg_ctl stop: %w: %s", err, bytes.TrimSpace(out)))
			}
			select {
			case <-c.exited:
			case <-time.After(stopTimeout):
				_ = c.cmd.Process.Kill()
				<-c.exited
			}
		}
	}
	if err := os.RemoveAll(c.Dir); err != nil {
		errs = append(errs, fmt.Errorf("pgtest: remove cluster dir: %w", err))
	}
	return errors.Join(errs...)
}

// ConnString returns a postgres:// URL for user/password on database db
// (sslmode=disable: the cluster has no TLS). For tests only.
func (c *Cluster) ConnString(user, password, db string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(user, password),
		Host:     c.addr(),
		Path:     "/" + db,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// SuperConnString is ConnString for the superuser.
func (c *Cluster) SuperConnString(db string) string {
	return c.ConnString(c.SuperUser, c.SuperPassword, db)
}

// Connect opens a superuser connection to database db ("postgres" if empty).
func (c *Cluster) Connect(ctx context.Context, db string) (*pgx.Conn, error) {
	if db == "" {
		db = "postgres"
	}
	conn, err := pgx.Connect(ctx, c.SuperConnString(db))
	if err != nil {
		return nil, fmt.Errorf("pgtest: connect as superuser: %w", err)
	}
	return conn, nil
}

// Exec runs statements as the superuser on the postgres database.
func (c *Cluster) Exec(ctx context.Context, sql string, args ...any) error {
	conn, err := c.Connect(ctx, "")
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		return fmt.Errorf("pgtest: exec: %w", err)
	}
	return nil
}

// ServerLog returns the server log so far.
func (c *Cluster) ServerLog() ([]byte, error) {
	b, err := os.ReadFile(c.LogFile)
	if err != nil {
		return nil, fmt.Errorf("pgtest: read server log: %w", err)
	}
	return b, nil
}

// CreateDatabase creates database name (owned by the superuser).
func (c *Cluster) CreateDatabase(name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return c.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
}

// SetHBA replaces pg_hba.conf with lines and reloads the server. Existing
// sessions keep working; new connections see the new rules. The reload is
// asynchronous: callers that need the new rules should retry briefly.
func (c *Cluster) SetHBA(lines ...string) error {
	if err := c.writeHBA(lines...); err != nil {
		return err
	}
	return c.reload()
}

// ResetHBA restores the default pg_hba.conf (DefaultHBA) and reloads.
func (c *Cluster) ResetHBA() error { return c.SetHBA(DefaultHBA) }

// reload sends SIGHUP to the postmaster and waits until it logged the reload.
func (c *Cluster) reload() error {
	const marker = "received SIGHUP, reloading configuration files"
	before, err := c.ServerLog()
	if err != nil {
		return err
	}
	n := bytes.Count(before, []byte(marker))
	if c.cmd == nil || c.cmd.Process == nil {
		return errors.New("pgtest: server not running")
	}
	if err := c.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		return fmt.Errorf("pgtest: reload: %w", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := c.ServerLog(); err == nil && bytes.Count(b, []byte(marker)) > n {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return errors.New("pgtest: reload not acknowledged by the server")
}

// EnableTLS gives the server a fresh self-signed certificate for
// 127.0.0.1 (ssl = on, via ALTER SYSTEM) and reloads it. Clients with
// sslmode=require then connect over TLS. DisableTLS undoes it.
func (c *Cluster) EnableTLS() error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("pgtest: tls key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: c.Host},
		IPAddresses:  []net.IP{net.ParseIP(c.Host)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("pgtest: tls certificate: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return fmt.Errorf("pgtest: tls key: %w", err)
	}
	certFile, keyFile := filepath.Join(c.dataDir, "server.crt"), filepath.Join(c.dataDir, "server.key")
	if err := c.writeServerFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})); err != nil {
		return err
	}
	if err := c.writeServerFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, stmt := range []string{
		"ALTER SYSTEM SET ssl_cert_file = " + quoteLiteral(certFile),
		"ALTER SYSTEM SET ssl_key_file = " + quoteLiteral(keyFile),
		"ALTER SYSTEM SET ssl = on",
	} {
		if err := c.Exec(ctx, stmt); err != nil {
			return err
		}
	}
	return c.reload()
}

// DisableTLS turns ssl off again and reloads.
func (c *Cluster) DisableTLS() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Exec(ctx, "ALTER SYSTEM SET ssl = off"); err != nil {
		return err
	}
	return c.reload()
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
