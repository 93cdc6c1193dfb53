package app

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/config"
	"github.com/rekeyhq/rekey/internal/postgres"
	"github.com/rekeyhq/rekey/internal/reencrypt"
)

// DefaultPostgresGrace is how long the previous role of an alternating
// pair keeps its password when rekey sets the strategy up.
const DefaultPostgresGrace = 24 * time.Hour

// PgPair is what setting up the alternating strategy of a PostgreSQL
// password did (init --postgres-alternating, postgres add-role).
type PgPair struct {
	// Secret is the password; First the role of its current version,
	// Second the other role of the pair.
	Secret, First, Second string
	Created               bool // the second role was created (else it existed)
	URLChanged            bool // the URL template now uses {{ NAME.role }}
	// The spec's settings as they are now: the derived value whose user is
	// the role, the two roles, and how long the previous one keeps its password.
	URLFrom string
	Roles   []string
	Grace   time.Duration
	// AdminSecret holds the admin connection that changes the passwords
	// (changed_by: admin), "" when the roles change them (changed_by: self).
	AdminSecret string
}

// makeAlternating switches the postgres-password secret spec to the
// alternating strategy: the role of the current version (the URL's user)
// is the first role of the pair; the second (named second, or proposed by
// postgres.PairRole when second is "") is created as a copy of it unless
// it exists; spec gets strategy alternating, roles and grace; the URLFrom
// template among derived gets {{ NAME.role | urlquery }} as its user.
// cur is the current version with its value. The role is created through
// the admin connection with changed_by: admin, else by the first role
// itself (which then needs CREATEROLE). Idempotent: on a spec that is
// already alternating it only makes sure both roles exist.
// A role it creates is added to created (when not nil) as soon as it
// exists, so that the caller can drop it again when a later step fails.
func makeAlternating(ctx context.Context, ap *postgres.Applier, spec *rekey.Spec, derived []rekey.Derived, cur rekey.VersionValue, second string, grace time.Duration, created *createdRoles) (PgPair, error) {
	pg := spec.Postgres
	res := PgPair{Secret: spec.Name}
	if pg == nil || pg.URLFrom == "" {
		return res, rekey.Errorf(rekey.CodeInvalid, "%s has no url_from: the alternating strategy switches the user of its URL", spec.Name).
			WithHint("set postgres: {url_from: DATABASE_URL} for %s in rekey.yaml", spec.Name)
	}
	if cur.Value.IsZero() {
		return res, rekey.Errorf(rekey.CodeNotFound, "%s has no current value to log in with", spec.Name)
	}
	ti := -1
	for i, d := range derived {
		if d.Name == pg.URLFrom {
			ti = i
		}
	}
	if ti < 0 {
		return res, rekey.Errorf(rekey.CodeInvalid, "url_from of %s: no derived value %s", spec.Name, pg.URLFrom)
	}
	if pg.Strategy == "alternating" && len(pg.Roles) == 2 {
		res.First = postgres.RoleOf(spec, cur.Version)
		res.Second = pg.Roles[0]
		if res.First == pg.Roles[0] {
			res.Second = pg.Roles[1]
		}
		if second != "" && second != res.Second {
			return res, rekey.Errorf(rekey.CodeConflict, "%s already alternates between roles %q and %q", spec.Name, pg.Roles[0], pg.Roles[1]).
				WithHint("change roles in rekey.yaml by hand if you mean to replace one")
		}
	} else {
		p, err := ap.ParamsFor(ctx, spec, cur)
		if err != nil {
			return res, err
		}
		res.First = p.User
		res.Second = second
		if res.Second == "" {
			if res.Second = postgres.PairRole(res.First); res.Second == "" {
				return res, rekey.Errorf(rekey.CodeInvalid, "role name %q is too long to derive the second role's name from", res.First).
					WithHint("name the second role (at most 63 bytes)")
			}
		}
		if res.Second == res.First {
			return res, rekey.Errorf(rekey.CodeInvalid, "the second role must differ from %q", res.First)
		}
	}

	c, p, err := creatorConn(ctx, ap, spec, cur)
	if err != nil {
		return res, err
	}
	defer c.Close(context.Background())
	if res.Created, err = postgres.EnsurePair(ctx, c, res.First, res.Second); err != nil {
		return res, postgres.RekeyError(err)
	}
	if res.Created {
		created.add(res.Second, p, adminOf(pg))
	}

	src := derived[ti].Template.Source()
	out, changed, err := postgres.RoleTemplate(src, spec.Name)
	if err != nil {
		return res, rekey.Wrap(rekey.ErrorCode(err), err, "%s", pg.URLFrom)
	}
	if changed {
		t, err := rekey.ParseTemplate(out)
		if err != nil {
			return res, err
		}
		derived[ti].Template = t
		res.URLChanged = true
	}
	pg.Strategy = "alternating"
	if len(pg.Roles) != 2 {
		pg.Roles = []string{res.First, res.Second}
	}
	if pg.Grace == 0 {
		pg.Grace = grace
	}
	if pg.Role != "" {
		pg.Role = "" // the version's role is the user from now on
	}
	res.URLFrom, res.Roles, res.Grace, res.AdminSecret = pg.URLFrom, pg.Roles, pg.Grace, adminOf(pg)
	return res, nil
}

// creatorConn opens the session that creates the second role of spec's
// pair: the admin's with changed_by: admin, else the first role's own
// (with the current version cur); p is what it connected with.
func creatorConn(ctx context.Context, ap *postgres.Applier, spec *rekey.Spec, cur rekey.VersionValue) (c *pgx.Conn, p postgres.Params, err error) {
	self := spec.Postgres.ChangedBy != "admin"
	if self {
		p, err = ap.ParamsFor(ctx, spec, cur)
	} else {
		p, err = ap.AdminParams(ctx, spec)
	}
	if err != nil {
		return nil, p, err
	}
	c, err = postgres.Connect(ctx, p)
	if err != nil {
		e := postgres.RekeyError(err)
		if errors.Is(err, postgres.ErrAuthFailed) && self {
			e = rekey.Wrap(rekey.CodeConflict, err, "PostgreSQL refuses the current password of %s for role %q", spec.Name, p.User).
				WithHint("the stored password and the database's disagree: `rekey recover --probe` finds the one it accepts")
		}
		return nil, p, e
	}
	return c, p, nil
}

// adminOf is the admin secret of pg with changed_by: admin, else "".
func adminOf(pg *rekey.PostgresSpec) string {
	if pg.ChangedBy == "admin" {
		return pg.AdminSecret
	}
	return ""
}

// initPostgresAlternating is `rekey init --postgres-alternating[=ROLE]`:
// for the .env's database password next to the URL that embeds it, it
// creates the second role of an alternating pair (named ROLE, or proposed
// from the URL's user), sets strategy: alternating, roles and grace on the
// spec, and rewrites the URL's template to use {{ NAME.role }}. It returns
// the attributes of the versions init imports (the URL's user is the role
// of the imported password). arg "" means the flag was not given;
// addingEnv that init adds an environment to an existing inventory;
// onPair, when not nil, hears each pair set up; created gets each role
// created (also when a later pair fails: the caller drops them).
func initPostgresAlternating(ctx context.Context, arg string, addingEnv bool, specs []rekey.Spec, derived []rekey.Derived, values map[string]string, onPair func(PgPair), created *createdRoles) (map[string]map[string]string, error) {
	if arg == "" {
		return nil, nil
	}
	if addingEnv {
		// The secrets' settings are shared by every environment: switching
		// them here would change the existing environments too.
		return nil, rekey.Errorf(rekey.CodeInvalid, "--postgres-alternating sets up a new inventory, not another environment of an existing one").
			WithHint("init the environment without it, then run `rekey postgres add-role -e ENVIRONMENT`")
	}
	second := arg
	if second == "auto" {
		second = ""
	}
	ap := &postgres.Applier{Derived: derived, Values: func(context.Context) (map[string]rekey.Value, error) {
		out := make(map[string]rekey.Value, len(values))
		for k, v := range values {
			out[k] = rekey.NewValueString(v)
		}
		return out, nil
	}}
	attrs := map[string]map[string]string{}
	for i := range specs {
		sp := &specs[i]
		if sp.Kind != rekey.KindPostgresPassword || sp.Postgres == nil || sp.Postgres.URLFrom == "" || values[sp.Name] == "" {
			continue
		}
		found := false
		for _, d := range derived {
			found = found || d.Name == sp.Postgres.URLFrom
		}
		if !found {
			continue
		}
		cur := rekey.VersionValue{Value: rekey.NewValueString(values[sp.Name])}
		if admin := adminURLSecret(specs, values, sp); admin != "" && sp.Postgres.ChangedBy != "admin" {
			// The .env holds an admin connection: it creates the second
			// role and changes the pair's passwords (PostgreSQL 16 and
			// later need one: the roles of a pair cannot change each other's).
			// It is a guess from a name: it must reach the app's server.
			if err := sameServer(ctx, ap, sp, cur, admin, values[admin]); err != nil {
				return nil, err
			}
			sp.Postgres.ChangedBy, sp.Postgres.AdminSecret = "admin", admin
		}
		res, err := makeAlternating(ctx, ap, sp, derived, cur, second, DefaultPostgresGrace, created)
		if err != nil {
			return nil, rekey.Wrap(rekey.ErrorCode(err), err, "--postgres-alternating")
		}
		attrs[sp.Name] = map[string]string{"role": res.First}
		if onPair != nil {
			onPair(res)
		}
	}
	if len(attrs) == 0 {
		return nil, rekey.Errorf(rekey.CodeInvalid, "--postgres-alternating: the .env has no PostgreSQL password next to a URL that embeds it").
			WithHint("it needs DATABASE_PASSWORD and a DATABASE_URL with that password; or set strategy: alternating in rekey.yaml by hand")
	}
	return attrs, nil
}

// sameServer refuses an admin URL (secret admin, value adminURL) that names
// another server than the app's URL of sp: init found it by its name, and
// through it rekey would create the second role and change the pair's
// passwords on that server, while the app logs in to its own. Roles belong
// to the whole server (the cluster), not to a database, so the host and
// port must be the same (compared as written: localhost, 127.0.0.1 and ::1
// are one; the default port is 5432) and the database may differ (an
// admin's URL often names postgres). The error names the two secrets and
// the servers, never a value.
func sameServer(ctx context.Context, ap *postgres.Applier, sp *rekey.Spec, cur rekey.VersionValue, admin, adminURL string) error {
	app, err := ap.ParamsFor(ctx, sp, cur)
	if err != nil {
		return rekey.Wrap(rekey.ErrorCode(err), err, "--postgres-alternating")
	}
	adm, err := postgres.ParseURL(adminURL)
	if err != nil {
		return rekey.Wrap(rekey.CodeInvalid, err, "--postgres-alternating: %s", admin)
	}
	if serverKey(app) == serverKey(adm) {
		return nil
	}
	a, b := serverName(app), serverName(adm)
	urlFrom := sp.Postgres.URLFrom
	return rekey.Errorf(rekey.CodeInvalid, "--postgres-alternating: the admin URL %s names the server %s, but %s (the URL of %s) names %s: rekey would create the second role and change the passwords on another server than the app's",
		admin, b, urlFrom, sp.Name, a).
		WithHint("point %s at the server of %s (the same host and port, written the same way; any database: roles belong to the whole server), or rename %s so that its name has no ADMIN; "+
			"if both reach the same server under two names (a pooler in front of it), run init without --postgres-alternating, then set changed_by: admin and admin_secret: %s under postgres: of %s in rekey.yaml, `rekey config trust` and `rekey postgres add-role`",
			admin, urlFrom, admin, admin, sp.Name)
}

// serverKey is the server a connection goes to, as sameServer compares
// them: host:port, the host in lower case, the loopback names as one.
func serverKey(p postgres.Params) string {
	h := strings.TrimSuffix(strings.ToLower(strings.Trim(p.Host, "[]")), ".")
	if h == "localhost" || h == "127.0.0.1" || h == "::1" {
		h = "localhost"
	}
	return h + "|" + strconv.Itoa(portOf(p))
}

// serverName is the host and port of p as written, for a message.
func serverName(p postgres.Params) string {
	h := p.Host
	if h == "" {
		h = "the default host"
	}
	return net.JoinHostPort(h, strconv.Itoa(portOf(p)))
}

func portOf(p postgres.Params) int {
	if p.Port == 0 {
		return 5432
	}
	return p.Port
}

// createdRoles are the roles one run of init or `postgres add-role`
// created: only those (EnsurePair says whether it created the role or
// kept one that existed), each with the session that created it, so that
// a run that fails after creating them drops them again (all or nothing).
// A process killed between the CREATE ROLE and the end of the run (kill -9,
// power loss) drops nothing: the role stays, and the next run finishes the
// set-up with it (EnsurePair keeps an existing second role that can log
// in); that run did not create it, so it never drops it either.
type createdRoles struct {
	list []createdRole
}

type createdRole struct {
	role string
	// via is the session that created it: the admin's (admin is then its
	// secret) or the first role's own. Never printed: it holds a password.
	via   postgres.Params
	admin string
}

func (c *createdRoles) add(role string, via postgres.Params, admin string) {
	if c != nil {
		c.list = append(c.list, createdRole{role: role, via: via, admin: admin})
	}
}

// undoTimeout bounds dropping the roles: it runs also when ctx was
// canceled (an interrupt is a failure like another).
const undoTimeout = 30 * time.Second

// undo drops the roles created, newest first, each through the same kind
// of session that created it, and returns err (what failed in the run of
// who: "init", "add-role") saying so; when a role cannot be dropped, the
// hint says which statement drops it. err itself when nothing was created.
func (c *createdRoles) undo(ctx context.Context, who string, err error) error {
	if c == nil || len(c.list) == 0 || err == nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), undoTimeout)
	defer cancel()
	var dropped, left, why, stmts []string
	for i := len(c.list) - 1; i >= 0; i-- {
		cr := c.list[i]
		if e := dropCreated(ctx, cr); e != nil {
			left = append(left, strconv.Quote(cr.role))
			why = append(why, e.Error())
			stmts = append(stmts, postgres.DropRoleStatement(cr.role))
			continue
		}
		dropped = append(dropped, strconv.Quote(cr.role))
	}
	c.list = nil
	var notes []string
	if len(dropped) > 0 {
		notes = append(notes, fmt.Sprintf("%s that %s created %s dropped again", roleList(dropped), who, wasWere(dropped)))
	}
	hint := rekey.ErrorHint(err)
	if len(left) > 0 {
		notes = append(notes, fmt.Sprintf("%s that %s created could not be dropped (%s)", roleList(left), who, strings.Join(why, "; ")))
		drop := fmt.Sprintf("drop what %s created: as an administrator run %s (or keep it: %s run again uses an existing role that can log in)", who, strings.Join(stmts, "; "), who)
		if hint == "" {
			hint = drop
		} else {
			hint += "; " + drop
		}
	}
	return &rekey.Error{Code: rekey.ErrorCode(err), Hint: hint, Err: &undoneError{err: err, note: strings.Join(notes, "; ")}}
}

// dropCreated drops cr.role through a new session like the one that
// created it.
func dropCreated(ctx context.Context, cr createdRole) error {
	c, err := postgres.Connect(ctx, cr.via)
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	return postgres.DropRole(ctx, c, cr.role)
}

func roleList(q []string) string {
	if len(q) == 1 {
		return "the role " + q[0]
	}
	return "the roles " + strings.Join(q, ", ")
}

func wasWere(q []string) string {
	if len(q) == 1 {
		return "was"
	}
	return "were"
}

// undoneError is a run's error followed by what was undone.
type undoneError struct {
	err  error
	note string
}

func (e *undoneError) Error() string { return e.err.Error() + "; " + e.note }
func (e *undoneError) Unwrap() error { return e.err }

// adminURLSecret is the managed secret of the .env that holds an admin
// connection for sp: a manual secret whose name says ADMIN and whose value
// is a postgres:// URL naming a user. "" when there is none (or several).
func adminURLSecret(specs []rekey.Spec, values map[string]string, sp *rekey.Spec) string {
	found := ""
	for _, o := range specs {
		v := values[o.Name]
		if o.Name == sp.Name || o.Kind != rekey.KindManual || !strings.Contains(strings.ToUpper(o.Name), "ADMIN") ||
			!(strings.HasPrefix(v, "postgres://") || strings.HasPrefix(v, "postgresql://")) {
			continue
		}
		if p, err := postgres.ParseURL(v); err != nil || p.User == "" {
			continue
		}
		if found != "" {
			return ""
		}
		found = o.Name
	}
	return found
}

// Column detection (`rekey init --detect-columns`). A column is reported
// as encrypted when every value sampled from it (up to sampleRows non-null
// values) has the shape of an AES-GCM ciphertext as rekey's aes-256-gcm
// codec stores it (nonce 12 bytes || ciphertext || tag 16 bytes):
//   - a text column: strict base64 (standard or URL-safe, padded or not)
//     that is not only hex digits (that would be hex), not a Fernet token
//     (gAAAAA...), decoding to at least 12+16 bytes (28; 36 with the key-id
//     header "rki\x01" + 4 bytes);
//   - a bytea column: at least 28 bytes;
//   - and the bytes look random: fewer than 3/4 printable ASCII (base64 of
//     text decodes to text; random bytes are about 37% printable).
//
// A column goes to the .env's data key that opens a sample (aes-256-gcm);
// those no key opens are only named in a note, unless no column opens with
// any key: then they are the first data key's best guess, said so.
const (
	sampleRows    = 5
	maxColumns    = 400
	minCipherLen  = 12 + 16
	maxPrintable  = 0.75
	keyIDHeaderSz = 8
)

// detectColumns fills s.Columns and s.ColumnsNote from the database the
// .env's PostgreSQL URL names (DATABASE_URL, else an admin URL).
func (r *initRun) detectColumns(ctx context.Context, s *config.Suggestions) error {
	urlKey := r.databaseURLName()
	if urlKey == "" {
		for _, c := range r.classes {
			v := r.values[c.Key]
			if strings.HasPrefix(v, "postgres://") || strings.HasPrefix(v, "postgresql://") {
				urlKey = c.Key
				break
			}
		}
	}
	if urlKey == "" {
		return rekey.Errorf(rekey.CodeInvalid, "--detect-columns: %s has no PostgreSQL URL (postgres://...) to sample the columns through", r.o.EnvFile).
			WithHint("add DATABASE_URL to the .env, or run init without --detect-columns and fill reencrypt: columns by hand")
	}
	p, err := postgres.ParseURL(r.values[urlKey])
	if err != nil {
		return rekey.Wrap(rekey.ErrorCode(err), err, "--detect-columns: %s", urlKey)
	}
	conn, err := postgres.Connect(ctx, p)
	if err != nil {
		return rekey.Wrap(rekey.ErrorCode(postgres.RekeyError(err)), postgres.RekeyError(err), "--detect-columns: connect with %s", urlKey)
	}
	defer conn.Close(context.Background())
	cols, err := textColumns(ctx, conn)
	if err != nil {
		return rekey.Wrap(rekey.ErrorCode(postgres.RekeyError(err)), postgres.RekeyError(err), "--detect-columns: list the columns through %s", urlKey)
	}
	var keys []string
	for _, c := range r.classes {
		if c.Secret && c.Spec.Kind == rekey.KindDataKey && r.values[c.Key] != "" {
			keys = append(keys, c.Key)
		}
	}
	s.Columns = map[string]config.DetectedColumns{}
	unreadable := 0
	var unopened []string
	for _, col := range cols {
		vals, err := sampleColumn(ctx, conn, col)
		if err != nil {
			unreadable++
			continue
		}
		enc, keyID, ok := cipherShape(vals, col.bytea)
		if !ok || len(keys) == 0 {
			continue
		}
		key := ""
		for _, k := range keys {
			if opensWith(vals, r.values[k], enc, keyID) {
				key = k
				break
			}
		}
		if key == "" {
			unopened = append(unopened, col.name())
			continue
		}
		d := s.Columns[key]
		if d.Encoding == "" || d.Encoding == enc {
			d.Encoding, d.KeyID = enc, d.KeyID || keyID
			d.Columns = append(d.Columns, col.name())
		} else {
			d.Notes = append(d.Notes, col.name()+" also opens with "+key+", but is "+enc+", not "+d.Encoding+": give it a data key of its own")
		}
		s.Columns[key] = d
	}
	for _, k := range keys {
		if d, ok := s.Columns[k]; ok {
			d.Opened = true
			d.Notes = append([]string{"found by --detect-columns: their sampled values open with " + k + " (aes-256-gcm)"}, d.Notes...)
			if len(unopened) > 0 {
				d.Notes = append(d.Notes, "also look encrypted but open with no data key of the .env (an older key, another codec?): "+strings.Join(unopened, ", "))
			}
			s.Columns[k] = d
		}
	}
	if len(s.Columns) == 0 && len(unopened) > 0 {
		// No key of the .env opens anything: the shape is the best guess.
		s.Columns[keys[0]] = config.DetectedColumns{Columns: unopened, Encoding: "base64",
			Notes: []string{"found by --detect-columns: they look like AES-GCM ciphertexts, but no data key of the .env opens them: check the key and codec"}}
	}
	s.ColumnsNote = fmt.Sprintf("--detect-columns sampled %d text and bytea columns through %s (up to %d rows each)", len(cols)-unreadable, urlKey, sampleRows)
	if unreadable > 0 {
		s.ColumnsNote += fmt.Sprintf("; %d could not be read", unreadable)
	}
	if len(keys) == 0 && len(cols) > 0 {
		s.ColumnsNote += "; the .env has no data key to attribute them to"
	}
	return nil
}

// column is a text or bytea column of a user table.
type column struct {
	schema, table, col string
	bytea              bool
}

// name is the column as reencrypt: columns writes it.
func (c column) name() string {
	if c.schema == "public" {
		return c.table + "." + c.col
	}
	return c.schema + "." + c.table + "." + c.col
}

// textColumns lists the text, varchar and bytea columns of the tables the
// connection's user can see, outside the system schemas.
func textColumns(ctx context.Context, conn *pgx.Conn) ([]column, error) {
	rows, err := conn.Query(ctx, `SELECT c.table_schema, c.table_name, c.column_name, c.data_type = 'bytea'
		FROM information_schema.columns c
		JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name
		WHERE t.table_type = 'BASE TABLE'
		  AND c.table_schema NOT IN ('pg_catalog', 'information_schema') AND c.table_schema NOT LIKE 'pg\_%'
		  AND c.data_type IN ('text', 'character varying', 'bytea')
		ORDER BY c.table_schema, c.table_name, c.ordinal_position
		LIMIT $1`, maxColumns)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (column, error) {
		var c column
		err := row.Scan(&c.schema, &c.table, &c.col, &c.bytea)
		return c, err
	})
}

// sampleColumn reads up to sampleRows non-null values of col.
func sampleColumn(ctx context.Context, conn *pgx.Conn, col column) ([][]byte, error) {
	ident := pgx.Identifier{col.col}.Sanitize()
	q := "SELECT " + ident + "::bytea FROM " + pgx.Identifier{col.schema, col.table}.Sanitize() + " WHERE " + ident + " IS NOT NULL LIMIT " + strconv.Itoa(sampleRows)
	if !col.bytea {
		q = "SELECT convert_to(" + ident + ", 'UTF8') FROM " + pgx.Identifier{col.schema, col.table}.Sanitize() + " WHERE " + ident + " IS NOT NULL LIMIT " + strconv.Itoa(sampleRows)
	}
	rows, err := conn.Query(ctx, q)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) ([]byte, error) {
		var b []byte
		err := row.Scan(&b)
		return b, err
	})
}

// cipherShape reports whether every value has the shape of an AES-GCM
// ciphertext (see above), with the column encoding and whether they carry
// the key-id header.
func cipherShape(vals [][]byte, bytea bool) (enc string, keyID, ok bool) {
	if len(vals) == 0 {
		return "", false, false
	}
	enc = "bytea"
	if !bytea {
		enc = "base64"
	}
	keyID = true
	for _, v := range vals {
		raw := v
		if !bytea {
			s := string(v)
			if strings.Trim(s, "0123456789abcdefABCDEF") == "" || strings.HasPrefix(s, "gAAAAA") {
				return "", false, false
			}
			var e string
			if raw, e = decodeBase64(s); raw == nil {
				return "", false, false
			}
			if e == "base64url" {
				enc = e
			}
		}
		header := len(raw) >= keyIDHeaderSz && string(raw[:4]) == "rki\x01"
		keyID = keyID && header
		if len(raw) < minCipherLen || printable(raw) >= maxPrintable {
			return "", false, false
		}
	}
	return enc, keyID, true
}

// decodeBase64 decodes s as strict base64, standard or URL-safe, padded or
// not; nil when it is neither.
func decodeBase64(s string) ([]byte, string) {
	for _, e := range []struct {
		enc  *base64.Encoding
		name string
	}{{base64.StdEncoding, "base64"}, {base64.RawStdEncoding, "base64"}, {base64.URLEncoding, "base64url"}, {base64.RawURLEncoding, "base64url"}} {
		if b, err := e.enc.Strict().DecodeString(s); err == nil {
			return b, e.name
		}
	}
	return nil, ""
}

// printable is the share of printable ASCII bytes of b.
func printable(b []byte) float64 {
	n := 0
	for _, c := range b {
		if c >= 0x20 && c < 0x7f {
			n++
		}
	}
	return float64(n) / float64(len(b))
}

// opensWith reports whether a sampled value opens with key under the
// aes-256-gcm codec.
func opensWith(vals [][]byte, key, enc string, keyID bool) bool {
	c, err := reencrypt.NewCipher(rekey.ReencryptSpec{Codec: "aes-256-gcm", Encoding: enc, KeyID: keyID}, rekey.NewValueString(key), io.Discard)
	if err != nil {
		return false
	}
	defer c.Close()
	for _, v := range vals {
		if _, err := c.Decrypt(v); err == nil {
			return true
		}
	}
	return false
}
