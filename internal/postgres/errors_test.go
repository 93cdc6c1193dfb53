package postgres_test

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/rekeyhq/rekey/internal/pgtest"
	"github.com/rekeyhq/rekey/internal/postgres"
	"github.com/rekeyhq/rekey/internal/testkit"
)

// closedPort returns a 127.0.0.1 port nothing listens on.
func closedPort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}

var allKinds = []error{postgres.ErrUnreachable, postgres.ErrAuthFailed, postgres.ErrPrivilege,
	postgres.ErrRoleMissing, postgres.ErrTLSRequired, postgres.ErrNoSCRAM}

// checkClass asserts err is of class want (and no other), has a hint,
// names addr and role, and does not contain any of the secrets.
func checkClass(t *testing.T, err error, want error, addr, role string, secrets ...[]byte) {
	t.Helper()
	if err == nil {
		t.Fatalf("want %v, got no error", want)
	}
	for _, k := range allKinds {
		if got := errors.Is(err, k); got != (k == want) {
			t.Errorf("errors.Is(err, %v) = %v; err: %v", k, got, err)
		}
	}
	if postgres.Hint(err) == "" {
		t.Errorf("no hint for %v", err)
	}
	msg := err.Error()
	if !strings.Contains(msg, addr) {
		t.Errorf("error does not name %s: %s", addr, msg)
	}
	if role != "" && !strings.Contains(msg, strconv.Quote(role)) {
		t.Errorf("error does not name role %q: %s", role, msg)
	}
	for _, s := range secrets {
		if len(s) > 0 && strings.Contains(msg, string(s)) {
			t.Errorf("error contains a password: %s", msg)
		}
	}
	if strings.Contains(msg, "failed to") {
		t.Errorf("error text not terse: %s", msg)
	}
	t.Logf("%v\n  hint: %s", err, postgres.Hint(err))
}

func TestErrorClasses(t *testing.T) {
	c := testkit.Cluster(t)
	admin := superConn(t)
	addr := net.JoinHostPort(c.Host, strconv.Itoa(c.Port))
	role := testkit.Unique("errs")
	pw := []byte("Errs-Right-Pw-1")
	createLoginRole(t, admin, role, pw)

	t.Run("unreachable", func(t *testing.T) {
		p := params(t, role, pw)
		p.Port = closedPort(t)
		_, err := postgres.Connect(testCtx(t), p)
		checkClass(t, err, postgres.ErrUnreachable, net.JoinHostPort(c.Host, strconv.Itoa(p.Port)), role, pw)
		if ok, err := postgres.TryLogin(testCtx(t), p); ok || !errors.Is(err, postgres.ErrUnreachable) {
			t.Errorf("TryLogin = %v, %v", ok, err)
		}
	})

	t.Run("unreachable-dns", func(t *testing.T) {
		p := params(t, role, pw)
		p.Host = "no-such-host.invalid"
		_, err := postgres.Connect(testCtx(t), p)
		checkClass(t, err, postgres.ErrUnreachable, "no-such-host.invalid", role, pw)
	})

	t.Run("unreachable-timeout", func(t *testing.T) {
		// A listener that never answers the startup message.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		p := params(t, role, pw)
		p.Port = l.Addr().(*net.TCPAddr).Port
		p.Options = map[string][]string{"connect_timeout": {"1"}}
		start := time.Now()
		_, err = postgres.Connect(testCtx(t), p)
		checkClass(t, err, postgres.ErrUnreachable, "127.0.0.1:"+strconv.Itoa(p.Port), role, pw)
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("connect_timeout not honoured: %s", d)
		}
	})

	t.Run("auth-failed", func(t *testing.T) {
		wrong := []byte("Errs-Wrong-Pw-2")
		_, err := postgres.Connect(testCtx(t), params(t, role, wrong))
		checkClass(t, err, postgres.ErrAuthFailed, addr, role, pw, wrong)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "28P01" {
			t.Errorf("underlying PgError not reachable: %v", err)
		}
		if ok, err := postgres.TryLogin(testCtx(t), params(t, role, wrong)); ok || err != nil {
			t.Errorf("TryLogin = %v, %v; want false, nil", ok, err)
		}
		if !strings.Contains(postgres.Hint(err), "rekey recover --probe") {
			t.Errorf("hint: %s", postgres.Hint(err))
		}
	})

	t.Run("privilege", func(t *testing.T) {
		other := testkit.Unique("errs_other")
		otherPw := []byte("Errs-Other-Pw-3")
		createLoginRole(t, admin, other, otherPw)
		conn := login(t, role, pw)
		newPw := []byte("Errs-New-Pw-4")
		err := postgres.SetPassword(testCtx(t), conn, other, newPw)
		checkClass(t, err, postgres.ErrPrivilege, addr, other, pw, newPw)
		if !strings.Contains(postgres.Hint(err), "CREATEROLE") {
			t.Errorf("hint: %s", postgres.Hint(err))
		}
		if !mustTryLogin(t, other, otherPw) {
			t.Error("other role's password changed")
		}
	})

	t.Run("role-missing", func(t *testing.T) {
		newPw := []byte("Errs-New-Pw-5")
		err := postgres.SetPassword(testCtx(t), admin, "no_such_role", newPw)
		checkClass(t, err, postgres.ErrRoleMissing, addr, "no_such_role", newPw)
		err = postgres.CloneRole(testCtx(t), admin, "no_such_role", testkit.Unique("errs_clone"), newPw)
		checkClass(t, err, postgres.ErrRoleMissing, addr, "no_such_role", newPw)
	})

	t.Run("tls-required", func(t *testing.T) {
		// The cluster has no TLS; pg_hba.conf accepts only hostssl, so every
		// plaintext connection gets "no pg_hba.conf entry ..., no encryption".
		if err := c.SetHBA("hostssl all all 127.0.0.1/32 scram-sha-256"); err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := c.ResetHBA(); err != nil {
				t.Fatal(err)
			}
			pgtest.Eventually(t, func() error { return c.Exec(testCtx(t), "SELECT 1") })
		}()
		p, err := refusedWithoutTLS(t, role, pw)
		checkClass(t, err, postgres.ErrTLSRequired, addr, role, pw)
		if !strings.Contains(postgres.Hint(err), "sslmode=require") {
			t.Errorf("hint: %s", postgres.Hint(err))
		}

		// With sslmode=prefer the client tried TLS and this server does not
		// offer it: the same server message then means "no pg_hba.conf
		// entry", not "TLS required".
		p.SSLMode = ""
		_, err = postgres.Connect(testCtx(t), p)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || !strings.Contains(pgErr.Message, "no encryption") {
			t.Fatalf("want the no-encryption hba error, got %v", err)
		}
		for _, k := range allKinds {
			if errors.Is(err, k) {
				t.Errorf("classified as %v: %v", k, err)
			}
		}
		if !strings.Contains(postgres.Hint(err), "pg_hba.conf") {
			t.Errorf("hint: %s", postgres.Hint(err))
		}
	})

	t.Run("tls-required-server-with-tls", func(t *testing.T) {
		// The realistic case (e.g. a managed server forcing TLS): the server
		// offers TLS and pg_hba.conf only has hostssl entries.
		if err := c.EnableTLS(); err != nil {
			t.Fatal(err)
		}
		if err := c.SetHBA("hostssl all all 127.0.0.1/32 scram-sha-256"); err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := c.ResetHBA(); err != nil {
				t.Fatal(err)
			}
			if err := c.DisableTLS(); err != nil {
				t.Fatal(err)
			}
			pgtest.Eventually(t, func() error { return c.Exec(testCtx(t), "SELECT 1") })
		}()
		p, err := refusedWithoutTLS(t, role, pw)
		checkClass(t, err, postgres.ErrTLSRequired, addr, role, pw)
		for _, mode := range []string{"require", "prefer", ""} {
			p.SSLMode = mode
			conn, err := postgres.Connect(testCtx(t), p)
			if err != nil {
				t.Fatalf("sslmode=%q: %v", mode, err)
			}
			var ssl bool
			err = conn.QueryRow(testCtx(t), "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl)
			conn.Close(testCtx(t))
			if err != nil || !ssl {
				t.Errorf("sslmode=%q: ssl=%v %v", mode, ssl, err)
			}
		}
	})

	t.Run("no-scram", func(t *testing.T) {
		conn := login(t, role, pw)
		mustExec(t, conn, "SET password_encryption = 'md5'")
		err := postgres.CheckSCRAM(testCtx(t), conn)
		checkClass(t, err, postgres.ErrNoSCRAM, addr, role, pw)
	})
}

// TestNoCleartextPassword: when pg_hba.conf asks for the password in
// cleartext, Connect refuses to send it unless require_auth allows it.
func TestNoCleartextPassword(t *testing.T) {
	c := testkit.Cluster(t)
	pw := []byte("Cleartext-Pw-1")
	_, role := newLoginRole(t, "cleartext", pw)
	if err := c.SetHBA("host all "+role+" 127.0.0.1/32 password", pgtest.DefaultHBA); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := c.ResetHBA(); err != nil {
			t.Fatal(err)
		}
	}()
	var err error
	pgtest.Eventually(t, func() error {
		_, err = postgres.Connect(testCtx(t), params(t, role, pw))
		if err != nil && strings.Contains(err.Error(), "server requested password authentication") {
			return nil
		}
		return errors.New("hba not reloaded yet")
	})
	if strings.Contains(err.Error(), string(pw)) || !strings.Contains(postgres.Hint(err), "require_auth") {
		t.Errorf("error %v, hint %q", err, postgres.Hint(err))
	}
	if ok, err := postgres.TryLogin(testCtx(t), params(t, role, pw)); ok || err == nil {
		t.Errorf("TryLogin = %v, %v; want an error", ok, err)
	}
	p := params(t, role, pw)
	p.Options = map[string][]string{"require_auth": {"password,scram-sha-256"}}
	conn, err := postgres.Connect(testCtx(t), p)
	if err != nil {
		t.Fatalf("explicit require_auth=password: %v", err)
	}
	conn.Close(testCtx(t))
}

// refusedWithoutTLS connects as role without TLS until the server refuses
// it for want of TLS (a pg_hba.conf change takes effect on reload), and
// returns the connection parameters and that error.
func refusedWithoutTLS(t *testing.T, role string, pw []byte) (postgres.Params, error) {
	t.Helper()
	p := params(t, role, pw)
	p.SSLMode = "disable"
	var err error
	pgtest.Eventually(t, func() error {
		_, err = postgres.Connect(testCtx(t), p)
		if errors.Is(err, postgres.ErrTLSRequired) {
			return nil
		}
		return fmt.Errorf("not yet TLS-required: %v", err)
	})
	return p, err
}
