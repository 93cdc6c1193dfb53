package postgres

// This file holds what differs between the PostgreSQL major versions rekey
// supports (15 to 18) in password handling: where password_encryption
// comes from, the MD5 deprecation of PostgreSQL 18, scram_iterations
// (16+), and what rekey tells the user about it (WithNotes).

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

const (
	// MD5DeprecatedMajor is the first major version that deprecates MD5
	// passwords: CREATE or ALTER ROLE storing an MD5 hash sends a WARNING
	// (unless md5_password_warnings is off). PostgreSQL 19 warns at each
	// login with an MD5 password too.
	MD5DeprecatedMajor = 18
	// SCRAMIterationsMajor is the first major version with the
	// scram_iterations setting, reported to clients: libpq (and rekey)
	// compute verifiers with the session's value.
	SCRAMIterationsMajor = 16
)

// MaxSCRAMIterations bounds the scram_iterations rekey follows: computing
// a verifier costs as much as a login.
const MaxSCRAMIterations = 1 << 22

type notesKey struct{}

// notes is what WithNotes installs: the user's sink, what it was told,
// and the roles found with an MD5 password.
type notes struct {
	say  func(string)
	mu   sync.Mutex
	said map[string]bool
	md5  map[string]bool
}

// WithNotes returns a context in which this package tells say what the
// user should know, each thing once: that a role's MD5 password was
// replaced by a SCRAM verifier (rekey sees an MD5 password when the server
// asks for md5 authentication at a login as the role, when the server warns
// about it, and, as a superuser, in pg_authid), and the WARNINGs servers
// send to rekey's sessions (Connect), scrubbed of the session's password.
// Without it, notices are dropped, as pgx does by default: never printed
// raw, never taken for errors.
func WithNotes(ctx context.Context, say func(note string)) context.Context {
	if say == nil {
		return ctx
	}
	return context.WithValue(ctx, notesKey{}, &notes{say: say, said: map[string]bool{}, md5: map[string]bool{}})
}

func notesFrom(ctx context.Context) *notes {
	n, _ := ctx.Value(notesKey{}).(*notes)
	return n
}

// tell says note unless it was said already.
func (n *notes) tell(note string) {
	n.mu.Lock()
	if n.said[note] {
		n.mu.Unlock()
		return
	}
	n.said[note] = true
	n.mu.Unlock()
	n.say(note)
}

func (n *notes) sawMD5(role string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.md5[role] = true
}

func (n *notes) hadMD5(role string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.md5[role]
}

// md5Warning reports whether a notice is PostgreSQL's MD5 deprecation
// warning: "setting an MD5-encrypted password" (18, CREATE/ALTER ROLE)
// or "authenticated with an MD5-encrypted password" (19, at login).
func md5Warning(msg string) (login, ok bool) {
	switch {
	case strings.HasPrefix(msg, "authenticated with an MD5-encrypted password"):
		return true, true
	case strings.HasPrefix(msg, "setting an MD5-encrypted password"):
		return false, true
	}
	return false, false
}

// onNotice handles the notices of a session of role: an MD5 warning at
// login marks the role; other WARNINGs become notes; NOTICE, INFO and
// lower are dropped.
func (n *notes) onNotice(role string, secrets [][]byte) pgconn.NoticeHandler {
	return func(_ *pgconn.PgConn, nt *pgconn.Notice) {
		if login, ok := md5Warning(nt.Message); ok && login {
			n.sawMD5(role)
			return
		}
		sev := nt.SeverityUnlocalized
		if sev == "" {
			sev = nt.Severity
		}
		if sev != "WARNING" {
			return
		}
		msg := "PostgreSQL warns (session of role " + strconv.Quote(role) + "): " + nt.Message
		if nt.Detail != "" {
			msg += " (" + strings.TrimSuffix(nt.Detail, ".") + ")"
		}
		n.tell(scrub(msg, secrets))
	}
}

// authTracer watches the protocol trace of a connection attempt for the
// server's request of md5 authentication, which it makes (pg_hba.conf
// method md5) when the role's stored password is an MD5 hash. It keeps
// nothing else of the trace.
type authTracer struct{ md5 atomic.Bool }

var md5Request = []byte("\tAuthenticationMD5Password\t")

func (t *authTracer) Write(b []byte) (int, error) {
	if bytes.Contains(b, md5Request) {
		t.md5.Store(true)
	}
	return len(b), nil
}

// watch installs the notice handler and the md5 tracer on cfg when ctx
// has notes; done, called with the connection attempt's result, records
// what the tracer saw and stops tracing.
func watch(ctx context.Context, cfg *pgx.ConnConfig, secrets [][]byte) (done func(*pgx.Conn)) {
	n := notesFrom(ctx)
	if n == nil {
		return func(*pgx.Conn) {}
	}
	role := cfg.User
	cfg.OnNotice = n.onNotice(role, secrets)
	tr := &authTracer{}
	cfg.BuildFrontend = func(r io.Reader, w io.Writer) *pgproto3.Frontend {
		f := pgproto3.NewFrontend(r, w)
		f.Trace(tr, pgproto3.TracerOptions{SuppressTimestamps: true})
		return f
	}
	return func(conn *pgx.Conn) {
		if conn != nil {
			conn.PgConn().Frontend().Untrace()
		}
		if tr.md5.Load() {
			n.sawMD5(role)
		}
	}
}

// storedMD5 reports whether role's stored password is an MD5 hash, when
// conn may read pg_authid (a superuser session; false otherwise).
func storedMD5(ctx context.Context, conn *pgx.Conn, role string) bool {
	if conn.PgConn().ParameterStatus("is_superuser") != "on" {
		return false
	}
	var md5 bool
	err := conn.QueryRow(ctx, `SELECT coalesce(rolpassword LIKE 'md5%', false) FROM pg_catalog.pg_authid WHERE rolname = $1`,
		pgx.QueryExecModeSimpleProtocol, role).Scan(&md5)
	return err == nil && md5
}

// md5Replaced tells the user, once per role, that role's MD5 password is a
// SCRAM verifier now.
func (n *notes) md5Replaced(role string, major int) {
	deprecated := ""
	if major >= MD5DeprecatedMajor {
		deprecated = fmt.Sprintf(", which PostgreSQL %d deprecates", major)
	}
	n.tell(fmt.Sprintf("role %q had an MD5 password%s: it is a SCRAM-SHA-256 verifier now. Clients that log in as %q must support SCRAM (libpq 10 or later, or your driver's equivalent); pg_hba.conf lines with method md5 keep working (the server then uses SCRAM) and can be changed to scram-sha-256", role, deprecated, role))
}

// scramIterations is the iteration count for a verifier set on conn: the
// session's scram_iterations (PostgreSQL 16+ reports it), as libpq's
// PQencryptPasswordConn does, but never below DefaultSCRAMIterations and
// at most MaxSCRAMIterations.
func scramIterations(conn *pgx.Conn) int {
	n, err := strconv.Atoi(conn.PgConn().ParameterStatus("scram_iterations"))
	switch {
	case err != nil || n < DefaultSCRAMIterations:
		return DefaultSCRAMIterations
	case n > MaxSCRAMIterations:
		return MaxSCRAMIterations
	}
	return n
}

// newVerifier is a SCRAM verifier of pw with a fresh salt and conn's
// iteration count.
func newVerifier(conn *pgx.Conn, pw []byte) (string, error) {
	salt := make([]byte, SCRAMSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("postgres: random salt: %w", err)
	}
	v := SCRAMVerifier(pw, salt, scramIterations(conn))
	if !isSCRAMVerifier(v) {
		return "", fmt.Errorf("postgres: internal error: malformed verifier")
	}
	return v, nil
}
