package postgres_test

// Behaviour that differs between PostgreSQL majors (15 to 18), asserted per
// version on the version matrix: password_encryption and where it is set,
// PostgreSQL 18's MD5 deprecation warnings, MD5 passwords replaced by
// SCRAM verifiers, scram_iterations (16+), and the catalog columns rekey
// reads.

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/rekeyhq/rekey/internal/pgtest"
	"github.com/rekeyhq/rekey/internal/postgres"
	"github.com/rekeyhq/rekey/internal/testkit"
)

// noteSink collects what postgres.WithNotes tells.
type noteSink struct {
	mu    sync.Mutex
	notes []string
}

func (s *noteSink) say(n string) { s.mu.Lock(); s.notes = append(s.notes, n); s.mu.Unlock() }

func (s *noteSink) all() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.notes...)
}

func notesCtx(t *testing.T) (context.Context, *noteSink) {
	s := &noteSink{}
	return postgres.WithNotes(testCtx(t), s.say), s
}

// md5Hash is PostgreSQL's stored MD5 password: "md5" + md5(password || role).
func md5Hash(pw, role string) string {
	sum := md5.Sum([]byte(pw + role))
	return "md5" + hex.EncodeToString(sum[:])
}

// legacyMD5Role creates a login role whose stored password is the MD5 hash
// of pw, as one created before the switch to SCRAM (PostgreSQL 18 warns).
func legacyMD5Role(t *testing.T, admin *pgx.Conn, prefix, pw string) string {
	t.Helper()
	role := testkit.Unique(prefix)
	mustExec(t, admin, "CREATE ROLE "+postgres.QuoteIdent(role)+" LOGIN PASSWORD '"+md5Hash(pw, role)+"'")
	if v := storedVerifier(t, admin, role); !strings.HasPrefix(v, "md5") {
		t.Fatalf("stored password of %s is %.6s..., not an MD5 hash", role, v)
	}
	return role
}

// md5HBA lets role log in with method md5 (the legacy setup), and restores
// the default pg_hba.conf at cleanup.
func md5HBA(t *testing.T, role string) {
	t.Helper()
	c := testkit.Cluster(t)
	if err := c.SetHBA("host all "+postgres.QuoteIdent(role)+" 127.0.0.1/32 md5", pgtest.DefaultHBA); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.ResetHBA(); err != nil {
			t.Error(err)
		}
	})
}

// wantNoSCRAM checks an ErrNoSCRAM refusal: its detail names where the
// value is set, its hint the statement that fixes it and what this major
// says about MD5.
func wantNoSCRAM(t *testing.T, err error, where, fix string) {
	t.Helper()
	if !errors.Is(err, postgres.ErrNoSCRAM) {
		t.Fatalf("err = %v, want ErrNoSCRAM", err)
	}
	if !strings.Contains(err.Error(), `password_encryption is "md5" (`+where) {
		t.Errorf("error %q does not say %q", err, where)
	}
	hint := postgres.Hint(err)
	if !strings.Contains(hint, fix) {
		t.Errorf("hint %q does not say %q", hint, fix)
	}
	major := testkit.Cluster(t).Major
	deprecated := strings.Contains(hint, "PostgreSQL 18 deprecates MD5 passwords, a future release removes them")
	weak := strings.Contains(hint, "MD5 passwords are weak, and PostgreSQL 18 deprecates them")
	if major >= 18 && (!deprecated || weak) || major < 18 && (deprecated || !weak) {
		t.Errorf("hint on PostgreSQL %d: %q", major, hint)
	}
}

// TestPasswordEncryptionMD5Refused: password_encryption = md5 where a
// role's session gets it — ALTER ROLE, ALTER ROLE IN DATABASE, ALTER
// DATABASE, the connection's options, ALTER SYSTEM — is refused by
// CheckSCRAM on the role's session, and by SetPassword from an admin
// session (whose own setting is scram-sha-256), with the statement that
// fixes it; SET password_encryption = md5 itself warns on no version.
func TestPasswordEncryptionMD5Refused(t *testing.T) {
	admin := superConn(t)
	c := testkit.Cluster(t)
	q := postgres.QuoteIdent
	pw := []byte("Enc-Pw-1")
	self := func(t *testing.T, role, db string, opts url.Values) error {
		p := params(t, role, pw)
		if db != "" {
			p.Database = db
		}
		p.Options = opts
		conn, err := postgres.Connect(testCtx(t), p)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		return postgres.CheckSCRAM(testCtx(t), conn)
	}
	unchanged := func(t *testing.T, role string, err error) {
		t.Helper()
		if !mustTryLogin(t, role, pw) {
			t.Errorf("refused SetPassword changed the password of %s (%v)", role, err)
		}
	}

	t.Run("role", func(t *testing.T) {
		_, role := newLoginRole(t, "enc_role", pw)
		mustExec(t, admin, "ALTER ROLE "+q(role)+" SET password_encryption = 'md5'")
		wantNoSCRAM(t, self(t, role, "", nil), "set by ALTER ROLE "+q(role)+" SET", "ALTER ROLE "+q(role)+" RESET password_encryption")
		err := postgres.SetPassword(testCtx(t), admin, role, []byte("Enc-Pw-2"))
		wantNoSCRAM(t, err, "set by ALTER ROLE "+q(role)+" SET", "ALTER ROLE "+q(role)+" RESET password_encryption")
		unchanged(t, role, err)
		mustExec(t, admin, "ALTER ROLE "+q(role)+" RESET password_encryption")
		if err := self(t, role, "", nil); err != nil {
			t.Errorf("after RESET: %v", err)
		}
	})
	t.Run("role in database", func(t *testing.T) {
		_, role := newLoginRole(t, "enc_roledb", pw)
		mustExec(t, admin, "ALTER ROLE "+q(role)+" IN DATABASE postgres SET password_encryption = 'md5'")
		fix := "ALTER ROLE " + q(role) + " IN DATABASE " + q("postgres") + " RESET password_encryption"
		wantNoSCRAM(t, self(t, role, "", nil), "set by ALTER ROLE "+q(role)+" IN DATABASE "+q("postgres")+" SET", fix)
		err := postgres.SetPassword(testCtx(t), admin, role, []byte("Enc-Pw-2"))
		wantNoSCRAM(t, err, "set by ALTER ROLE "+q(role)+" IN DATABASE "+q("postgres")+" SET", fix)
		unchanged(t, role, err)
	})
	t.Run("database", func(t *testing.T) {
		_, role := newLoginRole(t, "enc_db", pw)
		db := testkit.Unique("encdb")
		if err := c.CreateDatabase(db); err != nil {
			t.Fatal(err)
		}
		mustExec(t, admin, "ALTER DATABASE "+q(db)+" SET password_encryption = 'md5'")
		wantNoSCRAM(t, self(t, role, db, nil), "set by ALTER DATABASE "+q(db)+" SET", "ALTER DATABASE "+q(db)+" RESET password_encryption")
		// An admin session on that database has it too (CheckSCRAM), and
		// a setting of the role itself wins over the database's.
		mustExec(t, admin, "ALTER ROLE "+q(role)+" IN DATABASE "+q(db)+" SET password_encryption = 'scram-sha-256'")
		if err := self(t, role, db, nil); err != nil {
			t.Errorf("with the role's own scram-sha-256: %v", err)
		}
	})
	t.Run("connection options", func(t *testing.T) {
		_, role := newLoginRole(t, "enc_opts", pw)
		err := self(t, role, "", url.Values{"options": {"-c password_encryption=md5"}})
		wantNoSCRAM(t, err, "set by the connection's options", "PGOPTIONS")
	})
	t.Run("server", func(t *testing.T) {
		_, role := newLoginRole(t, "enc_server", pw)
		mustExec(t, admin, "ALTER SYSTEM SET password_encryption = 'md5'")
		t.Cleanup(func() {
			mustExec(t, admin, "ALTER SYSTEM RESET password_encryption")
			mustExec(t, admin, "SELECT pg_reload_conf()")
		})
		mustExec(t, admin, "SELECT pg_reload_conf()")
		pgtest.Eventually(t, func() error {
			if err := self(t, role, "", nil); !errors.Is(err, postgres.ErrNoSCRAM) {
				return errors.New("the server's md5 is not refused yet")
			}
			return nil
		})
		// A non-superuser cannot read which file: the hint names postgresql.conf.
		wantNoSCRAM(t, self(t, role, "", nil), "set in the server's configuration", "in postgresql.conf and reload")
		super := c.SuperConnString("postgres")
		sp, err := postgres.ParseURL(super)
		if err != nil {
			t.Fatal(err)
		}
		sconn, err := postgres.Connect(testCtx(t), sp)
		if err != nil {
			t.Fatal(err)
		}
		defer sconn.Close(context.Background())
		wantNoSCRAM(t, postgres.CheckSCRAM(testCtx(t), sconn), "set in ", "ALTER SYSTEM SET password_encryption = 'scram-sha-256'")
	})
	t.Run("SET warns on no version", func(t *testing.T) {
		_, role := newLoginRole(t, "enc_set", pw)
		ctx, sink := notesCtx(t)
		conn, err := postgres.Connect(ctx, params(t, role, pw))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(ctx, "SET password_encryption = 'md5'"); err != nil {
			t.Fatal(err)
		}
		if n := sink.all(); len(n) != 0 {
			t.Errorf("notes after SET password_encryption: %q", n)
		}
		if err := postgres.CheckSCRAM(ctx, conn); err == nil {
			t.Error("CheckSCRAM accepts a session that SET md5")
		}
	})
}

// TestSCRAMIterationsFollowsServer: from PostgreSQL 16 the session's
// scram_iterations (reported to clients) sets the iteration count of the
// verifiers rekey computes, as libpq's \password does, never below 4096;
// 15 has no such setting and gets 4096.
func TestSCRAMIterationsFollowsServer(t *testing.T) {
	pw := []byte("Iter-Pw-1")
	super, role := newLoginRole(t, "iter", pw)
	major := testkit.Cluster(t).Major
	sp, err := postgres.ParseURL(testkit.Cluster(t).SuperConnString("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	admin, err := postgres.Connect(testCtx(t), sp)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	for _, c := range []struct{ set, want16, want15 int }{{8192, 8192, 4096}, {1000, 4096, 4096}} {
		_, err := admin.Exec(testCtx(t), "SET scram_iterations = "+strconv.Itoa(c.set))
		if (err == nil) != (major >= postgres.SCRAMIterationsMajor) {
			t.Fatalf("PostgreSQL %d: SET scram_iterations: %v", major, err)
		}
		if err := postgres.SetPassword(testCtx(t), admin, role, pw); err != nil {
			t.Fatal(err)
		}
		want := c.want15
		if major >= postgres.SCRAMIterationsMajor {
			want = c.want16
		}
		if n, _ := parseVerifier(t, storedVerifier(t, super, role)); n != want {
			t.Errorf("PostgreSQL %d, scram_iterations %d: verifier has %d iterations, want %d", major, c.set, n, want)
		}
		if !mustTryLogin(t, role, pw) {
			t.Error("the password does not log in")
		}
	}
}

// TestCatalogAcrossVersions: the catalog columns rekey reads exist on
// every major, with what each major adds: pg_authid's role attributes are
// the same on 15 to 18 (CloneRole copies all of them but the password
// and LOGIN, which it sets), pg_auth_members gains inherit_option and
// set_option in 16 (CloneRole copies them), a non-superuser sees the
// database and pid of other roles' sessions in pg_stat_activity (what
// reencrypt's --rehearse counts before a template copy), reads
// pg_db_role_setting (SetPassword's check of a role's
// password_encryption) but not pg_authid (so it tells an MD5 password
// only from the server's md5 request).
func TestCatalogAcrossVersions(t *testing.T) {
	pw := []byte("Cat-Pw-1")
	super, role := newLoginRole(t, "catalog", pw)
	major := testkit.Cluster(t).Major
	cols := func(rel string) string {
		var s string
		if err := super.QueryRow(testCtx(t), `SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute
			WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped`, rel).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	if got, want := cols("pg_authid"), "oid,rolname,rolsuper,rolinherit,rolcreaterole,rolcreatedb,rolcanlogin,rolreplication,rolbypassrls,rolconnlimit,rolpassword,rolvaliduntil"; got != want {
		t.Errorf("PostgreSQL %d: pg_authid has %s, CloneRole knows %s", major, got, want)
	}
	members := "roleid,member,grantor,admin_option"
	if major >= 16 {
		members = "oid,roleid,member,grantor,admin_option,inherit_option,set_option"
	}
	if got := cols("pg_auth_members"); got != members {
		t.Errorf("PostgreSQL %d: pg_auth_members has %s, want %s", major, got, members)
	}

	other := login(t, role, pw)
	_, role2 := newLoginRole(t, "catalog2", pw)
	conn := login(t, role2, pw)
	var n int
	if err := conn.QueryRow(testCtx(t), `SELECT count(*) FROM pg_stat_activity WHERE datname = 'postgres' AND pid = $1`,
		int32(other.PgConn().PID())).Scan(&n); err != nil || n != 1 {
		t.Errorf("PostgreSQL %d: another role's session in pg_stat_activity: %d, %v", major, n, err)
	}
	mustExec(t, super, "ALTER ROLE "+postgres.QuoteIdent(role)+" SET password_encryption = 'scram-sha-256'")
	if err := conn.QueryRow(testCtx(t), `SELECT count(*) FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole
		WHERE r.rolname = $1`, role).Scan(&n); err != nil || n != 1 {
		t.Errorf("PostgreSQL %d: pg_db_role_setting as a non-superuser: %d, %v", major, n, err)
	}
	if _, err := conn.Exec(testCtx(t), "SELECT rolpassword FROM pg_authid"); !isPrivilegeErr(err) {
		t.Errorf("PostgreSQL %d: pg_authid as a non-superuser: %v", major, err)
	}
}

// TestCloneRoleRefusesMD5Setting: a role whose sessions get
// password_encryption = md5 (ALTER ROLE ... SET) is not cloned: the copy
// would get the setting and its rotations would be refused. Nothing is
// created; the hint names the RESET.
func TestCloneRoleRefusesMD5Setting(t *testing.T) {
	super, blue := newLoginRole(t, "clone_md5", []byte("Blue-Pw-1"))
	q := postgres.QuoteIdent
	mustExec(t, super, "ALTER ROLE "+q(blue)+" SET password_encryption = 'md5'")
	green := testkit.Unique("clone_md5_green")
	err := postgres.CloneRole(testCtx(t), super, blue, green, []byte("Green-Pw-2"))
	wantNoSCRAM(t, err, "set by ALTER ROLE "+q(blue)+" SET", "ALTER ROLE "+q(blue)+" RESET password_encryption")
	if ri, err := postgres.LookupRole(testCtx(t), super, green); err != nil || ri.Exists {
		t.Fatalf("a refused CloneRole left role %s behind (%v)", green, err)
	}
	mustExec(t, super, "ALTER ROLE "+q(blue)+" RESET password_encryption")
	if err := postgres.CloneRole(testCtx(t), super, blue, green, []byte("Green-Pw-2")); err != nil {
		t.Fatal(err)
	}
}
