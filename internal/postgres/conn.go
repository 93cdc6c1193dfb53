package postgres

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// DefaultConnectTimeout bounds a connection attempt when neither the URL
// (connect_timeout) nor PGCONNECT_TIMEOUT sets one.
const DefaultConnectTimeout = 10 * time.Second

// defaultRequireAuth refuses cleartext password authentication.
const defaultRequireAuth = "!password"

// connConfig turns p into a pgx configuration. The password is set on the
// parsed config, never written into a connection string, so no parse error
// can echo it. As with libpq, PG* environment variables fill what p leaves
// empty — except the password, which is always p.Password.
func (p Params) connConfig() (*pgx.ConnConfig, error) {
	var kv []string
	add := func(k, v string) { kv = append(kv, k+"="+quoteConnValue(v)) }
	if p.Host != "" {
		add("host", p.Host)
	}
	if p.Port != 0 {
		add("port", strconv.Itoa(p.Port))
	}
	if p.Database != "" {
		add("dbname", p.Database)
	}
	if p.User != "" {
		add("user", p.User)
	}
	if p.SSLMode != "" {
		add("sslmode", p.SSLMode)
	}
	keys := make([]string, 0, len(p.Options))
	for k := range p.Options {
		if !reservedOption(k) && !strings.ContainsAny(k, " ='\\") {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		add(k, p.Options.Get(k))
	}
	cfg, err := pgx.ParseConfig(strings.Join(kv, " "))
	if err != nil {
		return nil, err
	}
	cfg.Password = string(p.Password)
	if cfg.RequireAuth == "" {
		// Never hand the password to the server in cleartext ("password",
		// ldap, pam, radius methods): only challenge-response methods. An
		// explicit require_auth in Options or PGREQUIREAUTH overrides it.
		cfg.RequireAuth = defaultRequireAuth
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	if _, ok := cfg.RuntimeParams["application_name"]; !ok {
		cfg.RuntimeParams["application_name"] = "rekey"
	}
	// Simple protocol: works through PgBouncer in transaction mode and
	// leaves no prepared statements behind.
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	return cfg, nil
}

// secrets are the values errors must never show.
func (p Params) secrets() [][]byte {
	return [][]byte{p.Password, []byte(p.Options.Get("sslpassword"))}
}

func quoteConnValue(v string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}

// Connect opens a connection as p.User with p.Password. Errors are *Error,
// classified (ErrUnreachable, ErrAuthFailed, ErrTLSRequired, ...).
//
// Unless Options (or PGREQUIREAUTH) set require_auth, the connection uses
// require_auth=!password: the password is only used in challenge-response
// exchanges (SCRAM, md5), never sent in cleartext. The connect timeout is
// DefaultConnectTimeout unless connect_timeout says otherwise, and
// application_name defaults to "rekey".
func Connect(ctx context.Context, p Params) (*pgx.Conn, error) {
	cfg, err := p.connConfig()
	if err != nil {
		// Drop pgx's "cannot parse `<connection string>`: " framing: the
		// string holds no password, but may hold option values.
		detail := "invalid connection parameters"
		var pce *pgconn.ParseConfigError
		if errors.As(err, &pce) {
			msg := pce.Error()
			if i := strings.LastIndex(msg, "`: "); i >= 0 {
				detail += ": " + msg[i+3:]
			}
		}
		addr := ""
		if p.Host != "" {
			port := p.Port
			if port == 0 {
				port = 5432
			}
			addr = addrOf(p.Host, uint16(port))
		}
		return nil, &Error{Op: opConnect, Addr: addr, Role: p.User, Err: err, Detail: scrub(detail, p.secrets())}
	}
	done := watch(ctx, cfg, p.secrets())
	conn, err := pgx.ConnectConfig(ctx, cfg)
	done(conn)
	if err != nil {
		return nil, newError(opConnect, addrOf(cfg.Host, cfg.Port), cfg.User, err, p.secrets()...)
	}
	return conn, nil
}

// TryLogin reports whether p.Password logs in as p.User: (true, nil) it
// does, (false, nil) the server refused the password (SQLSTATE 28P01),
// (false, err) anything else. With SCRAM the server answers 28P01 for a
// role that does not exist too, by design.
func TryLogin(ctx context.Context, p Params) (bool, error) {
	conn, err := Connect(ctx, p)
	if err == nil {
		closeQuietly(conn)
		return true, nil
	}
	if errors.Is(err, ErrAuthFailed) {
		return false, nil
	}
	return false, err
}

// Probe tries the candidate passwords in order (AWS setSecret style:
// pending, then current, then previous) and returns the index of the first
// that logs in, or -1 when none does. Empty candidates are skipped. It
// stops at the first error that is not a refused password.
func Probe(ctx context.Context, p Params, candidates [][]byte) (int, error) {
	for i, pw := range candidates {
		if len(pw) == 0 {
			continue
		}
		q := p
		q.Password = pw
		ok, err := TryLogin(ctx, q)
		if err != nil {
			return -1, err
		}
		if ok {
			return i, nil
		}
	}
	return -1, nil
}

func closeQuietly(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = conn.Close(ctx)
}

// sessionRole is the role a connection logged in as.
func sessionRole(conn *pgx.Conn) string { return conn.Config().User }

// CheckSCRAM refuses (ErrNoSCRAM, with a hint) when password_encryption
// is not scram-sha-256 on this connection — the value that applies to the
// session's role: postgresql.conf, ALTER SYSTEM, ALTER DATABASE and ALTER
// ROLE [IN DATABASE] settings — so a caller never falls back to anything
// weaker. The hint names the statement that fixes it where it is set, and
// what the server's version says about MD5. Servers older than 10 (no
// SCRAM) are refused too.
func CheckSCRAM(ctx context.Context, conn *pgx.Conn) error {
	if err := checkServerVersion(conn, opCheckSCRAM); err != nil {
		return err
	}
	s, err := sessionEncryption(ctx, conn)
	if err != nil {
		return newError(opCheckSCRAM, connAddr(conn), sessionRole(conn), err)
	}
	if !s.scram() {
		return noSCRAM(conn, opCheckSCRAM, sessionRole(conn), s)
	}
	return nil
}

// serverMajor is the server's major version from the server_version
// parameter ("15.18 (Debian ...)" -> 15, "9.6.24" -> 9), or 0 if unknown.
func serverMajor(conn *pgx.Conn) int {
	v := conn.PgConn().ParameterStatus("server_version")
	end := 0
	for end < len(v) && v[end] >= '0' && v[end] <= '9' {
		end++
	}
	n, _ := strconv.Atoi(v[:end])
	return n
}

// checkServerVersion refuses servers without SCRAM support: before
// PostgreSQL 10 a verifier given to ALTER ROLE would become the password.
func checkServerVersion(conn *pgx.Conn, op string) error {
	if m := serverMajor(conn); m != 0 && m < 10 {
		return &Error{Op: op, Addr: connAddr(conn), Role: sessionRole(conn), Kind: ErrNoSCRAM,
			Detail: fmt.Sprintf("server version %d does not support scram-sha-256", m),
			hint:   "upgrade the server to PostgreSQL 10 or later; rekey never sends plaintext passwords"}
	}
	return nil
}

// SetPassword sets role's password with
//
//	ALTER ROLE <role> PASSWORD '<SCRAM-SHA-256 verifier>'
//
// on conn: either a session of the role itself (logged in with its current
// password) or an admin connection. Only a verifier computed here with a
// fresh salt is sent — never the password — through the simple query
// protocol (utility statements take no bind parameters); its iteration
// count is the session's scram_iterations (PostgreSQL 16+), as with libpq,
// and at least DefaultSCRAMIterations. On an admin connection, a
// password_encryption other than scram-sha-256 set for the role (ALTER
// ROLE ... SET, ALTER DATABASE ... SET) is refused as CheckSCRAM refuses
// the session's. An MD5 password it replaces is told once (WithNotes).
func SetPassword(ctx context.Context, conn *pgx.Conn, role string, newPassword []byte) error {
	addr := connAddr(conn)
	if err := checkRoleName(role); err != nil {
		return &Error{Op: opSetPass, Addr: addr, Role: role, Detail: strings.TrimPrefix(err.Error(), "postgres: ")}
	}
	if len(newPassword) == 0 {
		return &Error{Op: opSetPass, Addr: addr, Role: role, Detail: "empty password (the server would remove the password)"}
	}
	if err := checkServerVersion(conn, opSetPass); err != nil {
		return err
	}
	if role != sessionRole(conn) {
		// The session's password_encryption is the changer's (CheckSCRAM);
		// the role's own settings may say otherwise.
		s, ok, err := roleEncryption(ctx, conn, role)
		if err != nil {
			return newError(opSetPass, addr, role, err)
		}
		if ok {
			return noSCRAM(conn, opSetPass, role, s)
		}
	}
	verifier, err := newVerifier(conn, newPassword)
	if err != nil {
		return &Error{Op: opSetPass, Addr: addr, Role: role, Err: err, Detail: "cannot compute the verifier"}
	}
	n := notesFrom(ctx)
	wasMD5 := n != nil && (n.hadMD5(role) || storedMD5(ctx, conn, role))
	sql := "ALTER ROLE " + QuoteIdent(role) + " PASSWORD " + quoteLiteral(verifier)
	if _, err := conn.PgConn().Exec(ctx, sql).ReadAll(); err != nil {
		e := newError(opSetPass, addr, role, err, newPassword)
		e.major = serverMajor(conn)
		return e
	}
	if wasMD5 {
		n.md5Replaced(role, serverMajor(conn))
	}
	return nil
}

// roleAttrs are the pg_roles attributes CloneRole copies.
type roleAttrs struct {
	oid                                                   uint32
	super, inherit, createRole, createDB, repl, bypassRLS bool
	connLimit                                             int32
	validUntil                                            *string
}

// CloneRole creates role `to` as a copy of role `from` for the alternating
// strategy (app_blue / app_green): LOGIN, with password = verifier of pw,
// the same attributes as they are (SUPERUSER/NOSUPERUSER, INHERIT,
// CREATEROLE, CREATEDB, REPLICATION, BYPASSRLS, CONNECTION LIMIT, VALID
// UNTIL), the same role memberships (pg_auth_members, with their ADMIN —
// and from PostgreSQL 16 INHERIT and SET — options) and the same per-role
// settings (ALTER ROLE ... [IN DATABASE ...] SET). Object privileges
// granted to `from` directly and objects it owns are not copied: grant
// them to a group role both are members of. All of it runs in one
// transaction on admin, which must be idle (not inside a transaction).
// PostgreSQL 15 to 18 have the same role attributes; 16 added the INHERIT
// and SET options of memberships. A source whose sessions get
// password_encryption other than scram-sha-256 (ALTER ROLE ... SET) is
// refused before anything is created, as SetPassword would refuse it.
func CloneRole(ctx context.Context, admin *pgx.Conn, from, to string, pw []byte) error {
	addr := connAddr(admin)
	fail := func(role, detail string) error {
		return &Error{Op: opClone, Addr: addr, Role: role, Detail: detail}
	}
	for _, r := range []string{from, to} {
		if err := checkRoleName(r); err != nil {
			return fail(r, strings.TrimPrefix(err.Error(), "postgres: "))
		}
	}
	switch {
	case from == to:
		return fail(to, "source and new role are the same")
	case len(pw) == 0:
		return fail(to, "empty password")
	case admin.PgConn().TxStatus() != 'I':
		return fail(to, "admin connection is inside a transaction")
	}
	if err := checkServerVersion(admin, opClone); err != nil {
		return err
	}

	var a roleAttrs
	err := admin.QueryRow(ctx, `SELECT oid, rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolreplication,
	rolbypassrls, rolconnlimit, rolvaliduntil::text FROM pg_catalog.pg_roles WHERE rolname = $1`,
		pgx.QueryExecModeSimpleProtocol, from).
		Scan(&a.oid, &a.super, &a.inherit, &a.createRole, &a.createDB, &a.repl, &a.bypassRLS, &a.connLimit, &a.validUntil)
	if errors.Is(err, pgx.ErrNoRows) {
		return &Error{Op: opClone, Addr: addr, Role: from, Kind: ErrRoleMissing, Detail: fmt.Sprintf("role %q does not exist", from)}
	}
	if err != nil {
		return newError(opClone, addr, from, err)
	}

	// The copy would take the source's password_encryption setting, and
	// SetPassword would refuse to rotate it.
	if s, ok, err := roleEncryption(ctx, admin, from); err != nil {
		return newError(opClone, addr, from, err)
	} else if ok {
		return noSCRAM(admin, opClone, from, s)
	}
	stmts, err := cloneStatements(ctx, admin, a, to, pw)
	if err != nil {
		return newError(opClone, addr, from, err)
	}

	pg := admin.PgConn()
	if _, err := pg.Exec(ctx, "BEGIN").ReadAll(); err != nil {
		return newError(opClone, addr, to, err, pw)
	}
	for _, s := range stmts {
		if _, err := pg.Exec(ctx, s).ReadAll(); err != nil {
			rollback(pg)
			return newError(opClone, addr, to, err, pw)
		}
	}
	if _, err := pg.Exec(ctx, "COMMIT").ReadAll(); err != nil {
		rollback(pg)
		return newError(opClone, addr, to, err, pw)
	}
	return nil
}

// rollback ends a transaction left open by a failed statement. It uses its
// own context: the caller's may be what failed.
func rollback(pg *pgconn.PgConn) {
	if pg.IsClosed() || pg.TxStatus() == 'I' {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _ = pg.Exec(ctx, "ROLLBACK").ReadAll()
}

// cloneStatements builds CREATE ROLE, GRANT and ALTER ROLE SET statements.
func cloneStatements(ctx context.Context, admin *pgx.Conn, a roleAttrs, to string, pw []byte) ([]string, error) {
	verifier, err := newVerifier(admin, pw)
	if err != nil {
		return nil, err
	}
	flag := func(on bool, name string) string {
		if on {
			return " " + name
		}
		return " NO" + name
	}
	var b strings.Builder
	b.WriteString("CREATE ROLE " + QuoteIdent(to) + " WITH LOGIN")
	b.WriteString(flag(a.super, "SUPERUSER"))
	b.WriteString(flag(a.inherit, "INHERIT"))
	b.WriteString(flag(a.createRole, "CREATEROLE"))
	b.WriteString(flag(a.createDB, "CREATEDB"))
	b.WriteString(flag(a.repl, "REPLICATION"))
	b.WriteString(flag(a.bypassRLS, "BYPASSRLS"))
	b.WriteString(" CONNECTION LIMIT " + strconv.Itoa(int(a.connLimit)))
	if a.validUntil != nil {
		b.WriteString(" VALID UNTIL " + quoteLiteral(*a.validUntil))
	}
	b.WriteString(" PASSWORD " + quoteLiteral(verifier))
	stmts := []string{b.String()}

	// Memberships. PostgreSQL 16 added per-grant INHERIT and SET options and
	// may hold the same membership once per grantor.
	v16 := serverMajor(admin) >= 16
	q := `SELECT r.rolname, bool_or(m.admin_option), true, true
	FROM pg_catalog.pg_auth_members m JOIN pg_catalog.pg_roles r ON r.oid = m.roleid
	WHERE m.member = $1 GROUP BY r.rolname ORDER BY r.rolname`
	if v16 {
		q = `SELECT r.rolname, bool_or(m.admin_option), bool_or(m.inherit_option), bool_or(m.set_option)
	FROM pg_catalog.pg_auth_members m JOIN pg_catalog.pg_roles r ON r.oid = m.roleid
	WHERE m.member = $1 GROUP BY r.rolname ORDER BY r.rolname`
	}
	rows, err := admin.Query(ctx, q, pgx.QueryExecModeSimpleProtocol, int64(a.oid))
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var group string
		var adminOpt, inheritOpt, setOpt bool
		if err := rows.Scan(&group, &adminOpt, &inheritOpt, &setOpt); err != nil {
			rows.Close()
			return nil, err
		}
		g := "GRANT " + QuoteIdent(group) + " TO " + QuoteIdent(to)
		switch {
		case v16:
			g += fmt.Sprintf(" WITH ADMIN %t, INHERIT %t, SET %t", adminOpt, inheritOpt, setOpt)
		case adminOpt:
			g += " WITH ADMIN OPTION"
		}
		stmts = append(stmts, g)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}

	// Per-role settings (ALTER ROLE ... SET), per database or global.
	rows, err = admin.Query(ctx, `SELECT d.datname, s.setconfig
	FROM pg_catalog.pg_db_role_setting s LEFT JOIN pg_catalog.pg_database d ON d.oid = s.setdatabase
	WHERE s.setrole = $1 ORDER BY d.datname NULLS FIRST`, pgx.QueryExecModeSimpleProtocol, int64(a.oid))
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var db *string
		var config []string
		if err := rows.Scan(&db, &config); err != nil {
			rows.Close()
			return nil, err
		}
		prefix := "ALTER ROLE " + QuoteIdent(to)
		if db != nil {
			prefix += " IN DATABASE " + QuoteIdent(*db)
		}
		for _, setting := range config {
			name, value, ok := strings.Cut(setting, "=")
			if !ok || name == "" {
				continue
			}
			stmts = append(stmts, prefix+" SET "+QuoteIdent(name)+" TO "+gucValueSQL(name, value))
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return stmts, nil
}

// gucValueSQL renders a stored setting value for SET, as pg_dump does:
// list-valued settings whose elements the server double-quotes
// (GUC_LIST_QUOTE) become a list of literals, the rest one literal.
func gucValueSQL(name, value string) string {
	switch strings.ToLower(name) {
	case "search_path", "temp_tablespaces", "session_preload_libraries",
		"shared_preload_libraries", "local_preload_libraries", "unix_socket_directories":
		if elems, ok := splitGUCList(value); ok {
			if len(elems) == 0 {
				return "''"
			}
			quoted := make([]string, len(elems))
			for i, e := range elems {
				quoted[i] = quoteLiteral(e)
			}
			return strings.Join(quoted, ", ")
		}
	}
	return quoteLiteral(value)
}

// splitGUCList splits a GUC_LIST_QUOTE value such as `"$user", public`
// into its elements, removing double quotes (pg_dump's SplitGUCList).
func splitGUCList(s string) ([]string, bool) {
	var out []string
	i := 0
	skipSpace := func() {
		for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
			i++
		}
	}
	skipSpace()
	if i == len(s) {
		return out, true
	}
	for {
		var elem strings.Builder
		if s[i] == '"' {
			i++
			for {
				if i >= len(s) {
					return nil, false
				}
				if s[i] == '"' {
					if i+1 < len(s) && s[i+1] == '"' {
						elem.WriteByte('"')
						i += 2
						continue
					}
					i++
					break
				}
				elem.WriteByte(s[i])
				i++
			}
		} else {
			start := i
			for i < len(s) && s[i] != ',' && s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r' {
				i++
			}
			if i == start {
				return nil, false
			}
			elem.WriteString(s[start:i])
		}
		out = append(out, elem.String())
		skipSpace()
		if i == len(s) {
			return out, true
		}
		if s[i] != ',' {
			return nil, false
		}
		i++
		skipSpace()
		if i == len(s) {
			return nil, false
		}
	}
}
