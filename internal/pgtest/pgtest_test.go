package pgtest

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

var cluster *Cluster

func TestMain(m *testing.M) { os.Exit(Main(m, &cluster)) }

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestClusterSettings(t *testing.T) {
	c := Need(t, cluster)
	conn, err := c.Connect(ctx(t), "")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	want := map[string]string{
		"password_encryption":     "scram-sha-256",
		"log_statement":           "all",
		"listen_addresses":        "127.0.0.1",
		"fsync":                   "off",
		"logging_collector":       "off",
		"unix_socket_directories": c.Dir,
	}
	for name, v := range want {
		var got string
		if err := conn.QueryRow(ctx(t), "SELECT current_setting($1)", name).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != v {
			t.Errorf("%s = %q, want %q", name, got, v)
		}
	}
	var super bool
	if err := conn.QueryRow(ctx(t), "SELECT rolsuper FROM pg_roles WHERE rolname = current_user").Scan(&super); err != nil || !super {
		t.Fatalf("superuser: %v %v", super, err)
	}
	var pw string
	if err := conn.QueryRow(ctx(t), "SELECT rolpassword FROM pg_authid WHERE rolname = 'postgres'").Scan(&pw); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(pw, "SCRAM-SHA-256$") {
		t.Errorf("superuser password not stored as a SCRAM verifier")
	}
}

func TestWrongPasswordRefused(t *testing.T) {
	c := Need(t, cluster)
	conn, err := pgx.Connect(ctx(t), c.ConnString(c.SuperUser, "wrong", "postgres"))
	if err == nil {
		conn.Close(context.Background())
		t.Fatal("wrong superuser password accepted: pg_hba is not scram-sha-256")
	}
	if !strings.Contains(err.Error(), "28P01") {
		t.Fatalf("want 28P01, got %v", err)
	}
}

func TestPwfileRemovedAndPasswordNotLogged(t *testing.T) {
	c := Need(t, cluster)
	if _, err := os.Stat(filepath.Join(c.Dir, "pwfile")); !os.IsNotExist(err) {
		t.Errorf("pwfile still present: %v", err)
	}
	if err := c.Exec(ctx(t), "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	log, err := c.ServerLog()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(log, []byte("statement: SELECT 1")) {
		t.Errorf("log_statement=all not effective; log:\n%s", log)
	}
	if bytes.Contains(log, []byte(c.SuperPassword)) {
		t.Error("server log contains the superuser password")
	}
	conf, err := os.ReadFile(filepath.Join(c.Dir, "data", "postgresql.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(conf, []byte(c.SuperPassword)) {
		t.Error("postgresql.conf contains the superuser password")
	}
}

func TestConnStringEscaping(t *testing.T) {
	c := Need(t, cluster)
	const user, pw = `Od"d Us@r`, `p@ss:w/rd?#% &x`
	conn, err := c.Connect(ctx(t), "")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	// Plaintext only in this test, with statement logging off for the session.
	if _, err := conn.Exec(ctx(t), "SET log_statement = 'none'"); err != nil {
		t.Fatal(err)
	}
	for _, stmt := range []string{
		`DROP DATABASE IF EXISTS "Some DB"`,
		"DROP ROLE IF EXISTS " + pgx.Identifier{user}.Sanitize(),
		"CREATE ROLE " + pgx.Identifier{user}.Sanitize() + " LOGIN PASSWORD '" + pw + "'",
	} {
		if _, err := conn.Exec(ctx(t), stmt); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.CreateDatabase("Some DB"); err != nil {
		t.Fatal(err)
	}
	uc, err := pgx.Connect(ctx(t), c.ConnString(user, pw, "Some DB"))
	if err != nil {
		t.Fatal(err)
	}
	var db, who string
	if err := uc.QueryRow(ctx(t), "SELECT current_database(), current_user").Scan(&db, &who); err != nil {
		t.Fatal(err)
	}
	uc.Close(context.Background())
	if db != "Some DB" || who != user {
		t.Fatalf("connected to %q as %q", db, who)
	}
}

func TestSetHBA(t *testing.T) {
	c := Need(t, cluster)
	if err := c.SetHBA("host all all 127.0.0.1/32 reject"); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := c.ResetHBA(); err != nil {
			t.Fatal(err)
		}
		Eventually(t, func() error { return c.Exec(ctx(t), "SELECT 1") })
	}()
	Eventually(t, func() error {
		err := c.Exec(ctx(t), "SELECT 1")
		if err == nil || !strings.Contains(err.Error(), "rejects connection") {
			return errorString("hba not applied yet")
		}
		return nil
	})
}

type errorString string

func (e errorString) Error() string { return string(e) }

func TestStartStop(t *testing.T) {
	Need(t, cluster)
	t0 := time.Now()
	c, err := Start()
	if err != nil {
		t.Fatal(err)
	}
	started := time.Since(t0)
	if err := c.Exec(ctx(t), "SELECT 1"); err != nil {
		t.Error(err)
	}
	t1 := time.Now()
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Logf("start %s, stop %s", started.Round(time.Millisecond), time.Since(t1).Round(time.Millisecond))
	if _, err := os.Stat(c.Dir); !os.IsNotExist(err) {
		t.Errorf("cluster dir left behind: %v", err)
	}
	if err := c.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

func TestNeedWithoutCluster(t *testing.T) {
	if os.Getenv(DisallowSkipEnv) == "1" {
		t.Skip("checks the skip path, which is disabled here")
	}
	ok := t.Run("inner", func(t *testing.T) {
		Need(t, nil)
		t.Error("Need(nil) did not stop the test")
	})
	if !ok {
		t.Error("inner test failed instead of skipping")
	}
}

func TestEnableTLS(t *testing.T) {
	c := Need(t, cluster)
	if err := c.EnableTLS(); err != nil {
		t.Fatal(err)
	}
	tlsURL := strings.Replace(c.SuperConnString("postgres"), "sslmode=disable", "sslmode=require", 1)
	Eventually(t, func() error {
		conn, err := pgx.Connect(ctx(t), tlsURL)
		if err != nil {
			return err
		}
		defer conn.Close(context.Background())
		var ssl bool
		if err := conn.QueryRow(ctx(t), "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl); err != nil {
			return err
		}
		if !ssl {
			return errorString("connection not encrypted")
		}
		return nil
	})
	if err := c.DisableTLS(); err != nil {
		t.Fatal(err)
	}
	Eventually(t, func() error {
		conn, err := pgx.Connect(ctx(t), tlsURL)
		if err == nil {
			conn.Close(context.Background())
			return errorString("TLS still on")
		}
		return nil
	})
}
