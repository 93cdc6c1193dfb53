package postgres

// Where a session's password_encryption comes from, and the statement
// that makes it scram-sha-256 there.

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// encSetting is a password_encryption value and where it is set.
type encSetting struct {
	value  string
	source string // pg_settings.source: "configuration file", "user", "database", "database user", "client", ...
	file   string // pg_settings.sourcefile, when the session may read it
	role   string // the role of ALTER ROLE ... SET
	db     string // the database of ALTER DATABASE / ALTER ROLE ... IN DATABASE
}

func (s encSetting) scram() bool { return strings.EqualFold(s.value, "scram-sha-256") }

// alter is the statement that holds a per-role or per-database value
// ("ALTER ROLE x IN DATABASE y"), "" for the other sources.
func (s encSetting) alter() string {
	switch s.source {
	case "user":
		return "ALTER ROLE " + QuoteIdent(s.role)
	case "database":
		return "ALTER DATABASE " + QuoteIdent(s.db)
	case "database user":
		return "ALTER ROLE " + QuoteIdent(s.role) + " IN DATABASE " + QuoteIdent(s.db)
	}
	return ""
}

// where says, for an error's detail, what sets the value.
func (s encSetting) where() string {
	if a := s.alter(); a != "" {
		return "set by " + a + " SET"
	}
	switch s.source {
	case "client":
		return "set by the connection's options"
	case "session":
		return "set in this session (SET)"
	case "configuration file":
		if s.file != "" {
			return "set in " + s.file
		}
		return "set in the server's configuration"
	case "":
		return "the server's setting"
	}
	return "source: " + s.source
}

// fix is what an administrator runs to make the value scram-sha-256.
func (s encSetting) fix() string {
	if a := s.alter(); a != "" {
		return "as an administrator run " + a + " RESET password_encryption"
	}
	switch s.source {
	case "client":
		return "remove password_encryption from the options of the connection URL (options=-c ...) or from PGOPTIONS"
	case "command line", "environment variable":
		return "the server is started with it: set password_encryption = 'scram-sha-256' where its command line is made, and restart it"
	}
	if strings.HasSuffix(s.file, "postgresql.auto.conf") {
		return "as a superuser run ALTER SYSTEM SET password_encryption = 'scram-sha-256' and SELECT pg_reload_conf()"
	}
	return "set password_encryption = 'scram-sha-256' in postgresql.conf and reload (SELECT pg_reload_conf())"
}

// noSCRAMHint is the hint of an ErrNoSCRAM refusal on a server of major
// version major (0: unknown).
func noSCRAMHint(s encSetting, major int) string {
	h := s.fix() + "; rekey only ever sends SCRAM verifiers, never plaintext passwords or MD5 hashes"
	if s.source == "user" || s.source == "database" || s.source == "database user" {
		h += " (if a connection pooler checks MD5 hashes of this role, move it to SCRAM first)"
	}
	if major >= MD5DeprecatedMajor {
		return h + fmt.Sprintf("; PostgreSQL %d deprecates MD5 passwords, a future release removes them", major)
	}
	return h + "; MD5 passwords are weak, and PostgreSQL 18 deprecates them"
}

// noSCRAM is the ErrNoSCRAM refusal of op for setting s of role.
func noSCRAM(conn *pgx.Conn, op, role string, s encSetting) *Error {
	return &Error{Op: op, Addr: connAddr(conn), Role: role, Kind: ErrNoSCRAM,
		Detail: fmt.Sprintf("password_encryption is %q (%s), not scram-sha-256", s.value, s.where()),
		hint:   noSCRAMHint(s, serverMajor(conn))}
}

// sessionEncryption is password_encryption in conn's session (the role's
// and the database's settings apply at login) and where it comes from.
func sessionEncryption(ctx context.Context, conn *pgx.Conn) (encSetting, error) {
	var s encSetting
	err := conn.QueryRow(ctx, `SELECT setting, source, coalesce(sourcefile, ''), session_user, current_database()
	FROM pg_catalog.pg_settings WHERE name = 'password_encryption'`, pgx.QueryExecModeSimpleProtocol).
		Scan(&s.value, &s.source, &s.file, &s.role, &s.db)
	return s, err
}

// roleEncryption is a password_encryption setting other than
// scram-sha-256 that applies to role's sessions, as conn's catalog says
// (pg_db_role_setting, readable by every role): ALTER ROLE role IN
// DATABASE (the current database's first), ALTER ROLE role, or ALTER
// DATABASE of the current database unless a setting of the role overrides
// it. ok is false when none does: then the server's setting applies
// (CheckSCRAM of a session checks that one).
func roleEncryption(ctx context.Context, conn *pgx.Conn, role string) (s encSetting, ok bool, err error) {
	rows, err := conn.Query(ctx, `SELECT coalesce(d.datname, ''), s.setrole <> 0, coalesce(d.datname = current_database(), false),
	substr(c, length('password_encryption=') + 1)
	FROM pg_catalog.pg_db_role_setting s LEFT JOIN pg_catalog.pg_database d ON d.oid = s.setdatabase
	CROSS JOIN LATERAL unnest(s.setconfig) AS c
	WHERE c ILIKE 'password\_encryption=%'
	AND (s.setrole = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = $1) OR (s.setrole = 0 AND d.datname = current_database()))`,
		pgx.QueryExecModeSimpleProtocol, role)
	if err != nil {
		return encSetting{}, false, err
	}
	defer rows.Close()
	// By precedence: the role in this database, the role, this database,
	// the role in another database.
	var found [4]*encSetting
	for rows.Next() {
		var db, value string
		var byRole, here bool
		if err := rows.Scan(&db, &byRole, &here, &value); err != nil {
			return encSetting{}, false, err
		}
		c := encSetting{value: value, db: db, role: role}
		var rank int
		switch {
		case byRole && here:
			c.source, rank = "database user", 0
		case byRole && db == "":
			c.source, rank = "user", 1
		case !byRole:
			c.source, c.role, rank = "database", "", 2
		default:
			c.source, rank = "database user", 3
		}
		if found[rank] == nil || !c.scram() {
			found[rank] = &c
		}
	}
	if err := rows.Err(); err != nil {
		return encSetting{}, false, err
	}
	if found[2] != nil && (found[0] != nil || found[1] != nil) {
		found[2] = nil // the role's own setting wins over the database's
	}
	for _, c := range found {
		if c != nil && !c.scram() {
			return *c, true, nil
		}
	}
	return encSetting{}, false, nil
}
