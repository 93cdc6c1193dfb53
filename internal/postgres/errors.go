package postgres

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Error classes. Errors returned by this package wrap at most one of them;
// test with errors.Is and ask Hint for what to do about it.
var (
	ErrUnreachable = errors.New("server unreachable")
	ErrAuthFailed  = errors.New("password authentication failed")
	ErrPrivilege   = errors.New("insufficient privilege")
	ErrRoleMissing = errors.New("role does not exist")
	ErrTLSRequired = errors.New("server requires an encrypted connection")
	ErrNoSCRAM     = errors.New("password_encryption is not scram-sha-256")
)

// Error is the error type of this package. Its text names the operation,
// the server address and the role, never a password.
type Error struct {
	Op       string // "connect", "set password", "clone role", "check password_encryption"
	Addr     string // host:port, or the socket path
	Role     string // login role for connect, target role otherwise
	Kind     error  // one of the Err* classes, or nil
	SQLState string // set when the server reported the error
	Detail   string // what went wrong; passwords are scrubbed
	Err      error  // underlying error (from pgx), for errors.As
	hint     string // overrides the hint of Kind
	major    int    // the server's major version, when known (SetPassword)
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("postgres: ")
	b.WriteString(e.Op)
	if e.Addr != "" {
		b.WriteString(" ")
		b.WriteString(e.Addr)
	}
	if e.Role != "" {
		fmt.Fprintf(&b, " role %q", e.Role)
	}
	b.WriteString(": ")
	switch {
	case e.Detail != "":
		b.WriteString(e.Detail)
	case e.Kind != nil:
		b.WriteString(e.Kind.Error())
	case e.Err != nil:
		b.WriteString("unexpected error")
	}
	if e.SQLState != "" {
		b.WriteString(" (SQLSTATE ")
		b.WriteString(e.SQLState)
		b.WriteString(")")
	}
	return b.String()
}

// Unwrap exposes the class (for errors.Is) and the underlying pgx error
// (for errors.As, e.g. *pgconn.PgError).
func (e *Error) Unwrap() []error {
	var errs []error
	if e.Kind != nil {
		errs = append(errs, e.Kind)
	}
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	return errs
}

// Hint tells what to do about err, or "" when there is nothing specific.
func Hint(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) && e.hint != "" {
		return e.hint
	}
	op := ""
	if e != nil {
		op = e.Op
	}
	switch {
	case errors.Is(err, ErrUnreachable):
		return "check the host and port in DATABASE_URL, and that the server is running and reachable from here"
	case errors.Is(err, ErrAuthFailed):
		return "the password in the store and the one in the database disagree; run `rekey recover --probe` to find the one the database accepts"
	case errors.Is(err, ErrPrivilege):
		if op == opConnect {
			return "the role may not connect to this database: grant it CONNECT, or use another database in DATABASE_URL"
		}
		return "the role needs CREATEROLE to change another role's password: let the role change its own password (log in as it), or configure an admin connection"
	case errors.Is(err, ErrRoleMissing):
		return "create the role, or fix the role name"
	case errors.Is(err, ErrTLSRequired):
		return "the server has no pg_hba.conf entry for unencrypted connections from here: set sslmode=require in DATABASE_URL (or, if TLS is not the point, allow this client in pg_hba.conf)"
	case errors.Is(err, ErrNoSCRAM):
		return "set password_encryption = 'scram-sha-256' in postgresql.conf and reload; rekey only ever sends SCRAM verifiers, never plaintext passwords"
	}
	return ""
}

const (
	opConnect    = "connect"
	opSetPass    = "set password"
	opClone      = "clone role"
	opCheckSCRAM = "check password_encryption"
)

// newError classifies err. secrets are scrubbed from the detail text as a
// last line of defence (no pgx or server message is known to carry one).
func newError(op, addr, role string, err error, secrets ...[]byte) *Error {
	e := &Error{Op: op, Addr: addr, Role: role, Err: err}
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr):
		e.SQLState = pgErr.Code
		e.Detail = pgErr.Message
		e.Kind = pgKind(pgErr)
		if e.Kind == ErrTLSRequired && strings.Contains(err.Error(), "server refused TLS connection") {
			// sslmode=prefer tried TLS first and the server does not offer
			// it: TLS cannot be what is missing, pg_hba.conf has no entry
			// for this client at all.
			e.Kind = nil
			e.hint = "pg_hba.conf has no entry for this client, user and database: add one, or fix the host, user or database in DATABASE_URL"
		}
	case errors.Is(err, context.Canceled):
		e.Detail = "canceled"
	case isTimeout(err):
		e.Detail = "timeout"
		if op == opConnect {
			e.Kind = ErrUnreachable
			e.Detail = "connect timeout"
		}
	case strings.Contains(err.Error(), "authentication method requirement"):
		// "authentication method requirement "!password" failed: server
		// requested password authentication"
		e.Detail = rootCause(err).Error()
		e.hint = "the server asked for an authentication method require_auth forbids (by default rekey never sends a password in cleartext): use scram-sha-256 for this role in pg_hba.conf, or set require_auth in DATABASE_URL"
	default:
		e.Detail, e.Kind = netDetail(err)
	}
	e.Detail = scrub(e.Detail, secrets)
	return e
}

func pgKind(pgErr *pgconn.PgError) error {
	msg := strings.ToLower(pgErr.Message)
	switch {
	case pgErr.Code == "28P01" || strings.Contains(msg, "password authentication failed"):
		return ErrAuthFailed
	case pgErr.Code == "42501":
		return ErrPrivilege
	case pgErr.Code == "42704" && strings.HasPrefix(msg, "role "):
		return ErrRoleMissing
	case pgErr.Code == "28000" && strings.HasPrefix(msg, "role ") && strings.HasSuffix(msg, "does not exist"):
		return ErrRoleMissing
	case strings.Contains(msg, "no encryption") || strings.Contains(msg, "ssl off") ||
		strings.Contains(msg, "ssl connection is required") || strings.Contains(msg, "ssl required") ||
		strings.Contains(msg, "ssl/tls required") || strings.Contains(msg, "encryption required"):
		// "no pg_hba.conf entry for host ..., no encryption" (hostssl only),
		// "... SSL off" (older servers) and the wording of managed services.
		return ErrTLSRequired
	}
	return nil
}

func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// netDetail recognizes errors that mean the server could not be reached.
func netDetail(err error) (string, error) {
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return "cannot resolve host: " + dnsErr.Err, ErrUnreachable
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "dial" {
		var errno syscall.Errno
		if errors.As(opErr, &errno) {
			// "connection refused", "no such file or directory" (socket), ...
			return errno.Error(), ErrUnreachable
		}
		return rootCause(opErr).Error(), ErrUnreachable
	}
	return rootCause(err).Error(), nil
}

// rootCause follows Unwrap to the innermost error (the last attempt of a
// joined error), dropping pgx's "failed to connect to ..." framing.
func rootCause(err error) error {
	for {
		switch u := err.(type) {
		case interface{ Unwrap() []error }:
			errs := u.Unwrap()
			if len(errs) == 0 {
				return err
			}
			err = errs[len(errs)-1]
		case interface{ Unwrap() error }:
			next := u.Unwrap()
			if next == nil {
				return err
			}
			err = next
		default:
			return err
		}
	}
}

// scrub removes secrets from an error text, and rewords pgx's "failed to
// X" as "cannot X".
func scrub(s string, secrets [][]byte) string {
	s = strings.ReplaceAll(s, "failed to ", "cannot ")
	for _, sec := range secrets {
		if len(sec) > 0 && strings.Contains(s, string(sec)) {
			s = strings.ReplaceAll(s, string(sec), "[redacted]")
		}
	}
	return s
}

// addrOf formats where a connection goes.
func addrOf(host string, port uint16) string {
	if strings.HasPrefix(host, "/") {
		return host + "/.s.PGSQL." + strconv.Itoa(int(port))
	}
	return net.JoinHostPort(host, strconv.Itoa(int(port)))
}

// connAddr is the address conn is connected to.
func connAddr(conn *pgx.Conn) string {
	if conn == nil {
		return ""
	}
	if nc := conn.PgConn().Conn(); nc != nil && nc.RemoteAddr() != nil {
		if a := nc.RemoteAddr().String(); a != "" && a != "@" {
			return a
		}
	}
	cfg := conn.Config()
	return addrOf(cfg.Host, cfg.Port)
}

// RekeyError turns an error of this package into a *rekey.Error with a
// code and the hint of Hint; other errors are returned as they are.
func RekeyError(err error) error {
	var e *Error
	if err == nil || !errors.As(err, &e) {
		return err
	}
	return pgErr(err, codeOf(err))
}
