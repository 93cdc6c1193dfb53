package reencrypt

// The checkpoint table: where it is, who owns it, whether a table found
// under its name is ours (see doc.go, "Checkpoint").

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/rekeyhq/rekey"
)

// CheckpointTable is the name of the checkpoint table Run creates in
// ReencryptSpec.CheckpointSchema (default: the first schema of the
// search_path).
const CheckpointTable = "rekey_reencrypt_checkpoint"

// ErrForeignCheckpoint: a table under the checkpoint's name that rekey may
// not use (owned by a role that cannot write the data, writable by one,
// not of the checkpoint's shape, or not readable and writable by this
// role). Nothing was written.
var ErrForeignCheckpoint = fmt.Errorf("reencrypt: the checkpoint table cannot be used")

// checkpointCols is the checkpoint table's shape: column and type.
var checkpointCols = []string{"job_id text", "table_name text", "last_pk text[]", "done boolean",
	"rows_done bigint", "key_fp text", "updated_at timestamp with time zone"}

type checkpoint struct {
	lastPK   []string
	done     bool
	rowsDone int64
}

// openCheckpoint finds or creates the checkpoint table and sets r.ckpt
// ("" when there is none and this role may not create one: runs then work
// without a checkpoint). An existing table is used only when it is ours
// (checkCheckpoint); else the run is refused before anything is written.
func (r *runner) openCheckpoint(ctx context.Context) error {
	schema := r.cfg.CheckpointSchema
	if schema == "" {
		var cur *string
		if err := r.writer.QueryRow(ctx, `SELECT current_schema()`).Scan(&cur); err != nil {
			return dbError(err, "read the current schema")
		}
		if cur == nil {
			return nil
		}
		schema = *cur
	}
	var exists bool
	var err error
	if err = r.writer.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = $1)`, schema).Scan(&exists); err != nil {
		return dbError(err, "look up schema %s", schema)
	}
	if !exists {
		return invalid("checkpoint_schema %s does not exist in the database", displayIdent(schema)).
			WithHint("create it (CREATE SCHEMA %s), or leave checkpoint_schema out to use the first schema of the search_path", quoteIdent(schema))
	}
	r.ckptSchema = schema
	if r.ckptOwners, err = r.dataOwners(ctx); err != nil {
		return err
	}
	ident := quoteIdent(schema) + "." + quoteIdent(CheckpointTable)
	found, err := r.checkCheckpoint(ctx, ident)
	if err != nil || found {
		if err == nil {
			r.ckpt = ident
			r.adoptCheckpoint(ctx)
		}
		return err
	}
	r.ckpt = ident
	if err := r.createCheckpoint(ctx, r.writer); err != nil {
		r.ckpt = ""
		if pgCode(err) == "42501" { // no CREATE on the schema
			return nil
		}
		return err
	}
	// Created concurrently by a role we do not trust: check again.
	_, err = r.checkCheckpoint(ctx, ident)
	return err
}

// adoptCheckpoint hands a checkpoint table this role owns (left by an
// older rekey, or by createCheckpoint's fallback) to the tables' owner, so
// that the other role of a pair can use it next; when the owner may not
// own it (no CREATE on the schema), its privileges are granted to the
// owner instead. Failures are ignored: the table stays usable by this role.
func (r *runner) adoptCheckpoint(ctx context.Context) {
	if len(r.ckptOwners) != 1 {
		return
	}
	var mine bool
	err := r.writer.QueryRow(ctx, `SELECT pg_get_userbyid(relowner) = current_user AND current_user <> $2
		FROM pg_class WHERE oid = to_regclass($1)`, r.ckpt, r.ckptOwners[0]).Scan(&mine)
	if err != nil || !mine {
		return
	}
	owner := quoteIdent(r.ckptOwners[0])
	if _, err := r.writer.Exec(ctx, `ALTER TABLE `+r.ckpt+` OWNER TO `+owner); err != nil {
		_, _ = r.writer.Exec(ctx, `GRANT SELECT, INSERT, UPDATE, DELETE ON `+r.ckpt+` TO `+owner)
	}
}

// dataOwners are the distinct owners of the job's tables.
func (r *runner) dataOwners(ctx context.Context) ([]string, error) {
	var oids []uint32
	for _, t := range r.tables {
		oids = append(oids, t.oid)
	}
	var owners []string
	err := r.writer.QueryRow(ctx, `SELECT array_agg(DISTINCT pg_get_userbyid(relowner)::text) FROM pg_class WHERE oid = ANY($1::oid[])`, oids).Scan(&owners)
	if err != nil {
		return nil, dbError(err, "look up the owners of the tables")
	}
	return owners, nil
}

// createCheckpoint creates the checkpoint table r.ckpt on conn when it
// does not exist, owned by the role that owns the data tables when this
// role may SET ROLE to it (so that every role of an alternating pair,
// members of that owner, can use and drop it); else owned by this role,
// with its privileges granted to the data's owner (its members then use
// it too).
func (r *runner) createCheckpoint(ctx context.Context, conn *pgx.Conn) error {
	owners := r.ckptOwners
	asOwner := ""
	if len(owners) == 1 {
		asOwner = owners[0]
	}
	create := `CREATE TABLE IF NOT EXISTS ` + r.ckpt + ` (
			job_id text NOT NULL,
			table_name text NOT NULL,
			last_pk text[],
			done boolean NOT NULL DEFAULT false,
			rows_done bigint NOT NULL DEFAULT 0,
			key_fp text NOT NULL,
			updated_at timestamptz NOT NULL DEFAULT now(),
			PRIMARY KEY (job_id, table_name))`
	for attempt := 0; ; attempt++ {
		err := createAs(ctx, conn, asOwner, create)
		if err == nil {
			return r.checkCreated(ctx, conn)
		}
		switch pgCode(err) {
		case "23505", "42P07": // created concurrently
			if attempt < 2 {
				continue
			}
		case "42501": // SET ROLE refused, or the owner may not create there
			if asOwner != "" {
				if err := createAs(ctx, conn, "", create); err != nil {
					return dbError(err, "create the checkpoint table")
				}
				_, _ = conn.Exec(ctx, `GRANT SELECT, INSERT, UPDATE, DELETE ON `+r.ckpt+` TO `+quoteIdent(asOwner))
				return r.checkCreated(ctx, conn)
			}
			return err
		}
		return dbError(err, "create the checkpoint table")
	}
}

// checkCreated refuses the table CREATE TABLE IF NOT EXISTS left in place
// when it belongs to neither this role nor the tables' owner (planted
// since it was looked up, or since a finishing job dropped it).
func (r *runner) checkCreated(ctx context.Context, conn *pgx.Conn) error {
	var owner string
	var ok bool
	err := conn.QueryRow(ctx, `SELECT pg_get_userbyid(relowner)::text, pg_get_userbyid(relowner) = current_user OR pg_get_userbyid(relowner)::text = ANY($2::text[])
		FROM pg_class WHERE oid = to_regclass($1)`, r.ckpt, r.ckptOwners).Scan(&owner, &ok)
	if err != nil {
		return dbError(err, "inspect the checkpoint table")
	}
	if !ok {
		return (&rekey.Error{Code: rekey.CodeInvalid, Err: ErrForeignCheckpoint,
			Msg: fmt.Sprintf("reencrypt: %s was created by %s while this run was creating it; nothing more is written to it. To fix it: DROP TABLE %s", r.ckpt, owner, r.ckpt)}).
			WithHint("or set checkpoint_schema: in the reencrypt: section to a schema where only the data's owner can create tables")
	}
	return nil
}

// createAs runs create in a transaction, as role (SET LOCAL ROLE) unless
// role is "" or the session's role already.
func createAs(ctx context.Context, conn *pgx.Conn, role, create string) error {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if role != "" {
		if _, err := tx.Exec(ctx, `SELECT set_config('role', $1, true) WHERE $1 <> current_user`, role); err != nil {
			return err
		}
	}
	if _, err := tx.Exec(ctx, create); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// ckptInfo is what checkCheckpoint reads of an existing table.
type ckptInfo struct {
	owner              string
	cols               []string
	kind               string
	pkOK, extras       bool
	trustedOwner       bool
	untrustedWriters   []string
	readable, writable bool
}

// checkCheckpoint reports whether the checkpoint table ident exists, and
// refuses one rekey must not use: of another shape (never written to);
// owned or writable (INSERT, UPDATE, TRIGGER) by a role that cannot write
// the data itself (its rows could make a run skip rows still on the old
// key, and its triggers would run with this role's privileges); or that
// this role may not read and write. The error names the owner and the
// statement that fixes it.
func (r *runner) checkCheckpoint(ctx context.Context, ident string) (bool, error) {
	owners := r.ckptOwners
	var major int
	if err := r.writer.QueryRow(ctx, `SELECT current_setting('server_version_num')::int / 10000`).Scan(&major); err != nil {
		return false, dbError(err, "read the server version")
	}
	// can(x) is true when role x can already write the data: it is this
	// session's role, a superuser, or has the privileges of (or may SET
	// ROLE to) every owner of the job's tables.
	act := `pg_has_role(%s, o, 'MEMBER')`
	if major >= 16 {
		act = `(pg_has_role(%[1]s, o, 'USAGE') OR pg_has_role(%[1]s, o, 'SET'))`
	}
	can := func(x string) string {
		return `(` + x + ` = (SELECT oid FROM pg_roles WHERE rolname = current_user) OR (SELECT rolsuper FROM pg_roles WHERE oid = ` + x +
			`) OR NOT EXISTS (SELECT FROM unnest($2::text[]) o WHERE NOT ` + fmt.Sprintf(act, x) + `))`
	}
	var info ckptInfo
	err := r.writer.QueryRow(ctx, `SELECT pg_get_userbyid(c.relowner)::text, c.relkind::text,
		ARRAY(SELECT a.attname || ' ' || format_type(a.atttypid, NULL) FROM pg_attribute a
			WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum),
		EXISTS (SELECT FROM pg_constraint k WHERE k.conrelid = c.oid AND k.contype = 'p'
			AND ARRAY(SELECT a.attname::text FROM unnest(k.conkey) WITH ORDINALITY u(n, i) JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = u.n ORDER BY u.i) = ARRAY['job_id', 'table_name']),
		c.relhastriggers OR c.relhasrules OR c.relrowsecurity
			OR EXISTS (SELECT FROM pg_constraint k WHERE k.conrelid = c.oid AND k.contype NOT IN ('p', 'n'))
			OR (SELECT count(*) FROM pg_index i WHERE i.indrelid = c.oid) <> 1,
		`+can("c.relowner")+`,
		ARRAY(SELECT DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee)::text END
			FROM aclexplode(c.relacl) a WHERE a.privilege_type IN ('INSERT', 'UPDATE', 'TRIGGER')
			AND (a.grantee = 0 OR NOT `+can("a.grantee")+`)),
		has_table_privilege(c.oid, 'SELECT'), has_table_privilege(c.oid, 'INSERT, UPDATE, DELETE')
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relname = '`+CheckpointTable+`'`, r.ckptSchema, owners).
		Scan(&info.owner, &info.kind, &info.cols, &info.pkOK, &info.extras, &info.trustedOwner, &info.untrustedWriters, &info.readable, &info.writable)
	if err == pgx.ErrNoRows {
		return false, nil
	}
	if err != nil {
		return false, dbError(err, "inspect the checkpoint table %s", ident)
	}
	return true, r.judgeCheckpoint(ident, owners, &info)
}

// judgeCheckpoint is checkCheckpoint's verdict on what it read. The
// statement that fixes a refusal is in the message itself (callers may
// replace the hint).
func (r *runner) judgeCheckpoint(ident string, owners []string, info *ckptInfo) error {
	display := displayIdent(r.ckptSchema) + "." + CheckpointTable
	drop := "DROP TABLE " + ident
	refuse := func(why, fix string, args ...any) error {
		return (&rekey.Error{Code: rekey.CodeInvalid, Err: ErrForeignCheckpoint,
			Msg: fmt.Sprintf("reencrypt: %s (owned by %s) %s; nothing was written. To fix it: %s", display, info.owner, why, fmt.Sprintf(fix, args...))}).
			WithHint("or set checkpoint_schema: in the reencrypt: section to a schema where only the data's owner can create tables")
	}
	shape := info.kind == "r" && info.pkOK && strings.Join(info.cols, ",") == strings.Join(checkpointCols, ",")
	if !shape {
		return refuse("is not rekey's checkpoint table (columns: "+strings.Join(info.cols, ", ")+"): rekey never writes to it",
			"if it is a leftover, drop it (%s)", drop)
	}
	owner := "the tables' owner"
	if len(owners) == 1 {
		owner = quoteIdent(owners[0])
	}
	alter := "ALTER TABLE " + ident + " OWNER TO " + owner
	if !info.trustedOwner {
		return refuse("belongs to a role that cannot write the re-encrypted tables itself: its rows could make the run skip rows still on the old key",
			"as a superuser (or %s), run %s if you trust its rows, else %s", info.owner, alter, drop)
	}
	if len(info.untrustedWriters) > 0 {
		return refuse("may be written by "+strings.Join(info.untrustedWriters, ", ")+", who cannot write the re-encrypted tables themselves",
			"REVOKE INSERT, UPDATE, TRIGGER ON %s FROM %s, or %s", ident, strings.Join(info.untrustedWriters, ", "), drop)
	}
	if info.extras {
		return refuse("has triggers, rules, row security, constraints or indexes rekey did not create",
			"%s (rekey creates it again)", drop)
	}
	if !info.readable || !info.writable {
		return refuse("cannot be read and written by this role (left by a run as another role of the pair?)",
			"as %s or a superuser, run %s (every member of the owner can then use it and the run resumes; a run of rekey as %s does it itself), or %s (the run then starts over, skipping rows already on the new key)", info.owner, alter, info.owner, drop)
	}
	return nil
}

// loadCheckpoints reads this job's checkpoints. One made with other keys
// (another rotation reusing the id) is discarded.
func (r *runner) loadCheckpoints(ctx context.Context) (map[string]checkpoint, error) {
	out := map[string]checkpoint{}
	if r.ckpt == "" {
		return out, nil
	}
	rows, err := r.writer.Query(ctx, `SELECT table_name, last_pk, done, rows_done, key_fp FROM `+r.ckpt+` WHERE job_id = $1`, r.job.JobID)
	if err != nil {
		return nil, dbError(err, "read the checkpoint")
	}
	stale := false
	keys := map[string]int{}
	for _, t := range r.tables {
		keys[t.ident] = len(t.pk)
	}
	for rows.Next() {
		var name, fp string
		var cp checkpoint
		if err := rows.Scan(&name, &cp.lastPK, &cp.done, &cp.rowsDone, &fp); err != nil {
			rows.Close()
			return nil, dbError(err, "read the checkpoint")
		}
		nk, ok := keys[name]
		if fp != r.keyFP || !ok || (cp.lastPK != nil && len(cp.lastPK) != nk) {
			stale = true
			continue
		}
		out[name] = cp
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, dbError(err, "read the checkpoint")
	}
	if stale {
		if _, err := r.writer.Exec(ctx, `DELETE FROM `+r.ckpt+` WHERE job_id = $1 AND key_fp <> $2`, r.job.JobID, r.keyFP); err != nil {
			return nil, dbError(err, "clear a stale checkpoint")
		}
	}
	return out, nil
}

// finish deletes the job's checkpoint rows, and the table when no other
// job has rows in it (skipped when another session is using it).
func (r *runner) finish(ctx context.Context) error {
	if r.ckpt == "" {
		return nil
	}
	if _, err := r.writer.Exec(ctx, `DELETE FROM `+r.ckpt+` WHERE job_id = $1`, r.job.JobID); err != nil {
		return dbError(err, "delete the checkpoint")
	}
	tx, err := r.writer.Begin(ctx)
	if err != nil {
		return nil
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := tx.Exec(ctx, `LOCK TABLE `+r.ckpt+` IN ACCESS EXCLUSIVE MODE NOWAIT`); err != nil {
		return nil
	}
	var empty bool
	if err := tx.QueryRow(ctx, `SELECT NOT EXISTS (SELECT FROM `+r.ckpt+`)`).Scan(&empty); err != nil || !empty {
		return nil
	}
	if _, err := tx.Exec(ctx, `DROP TABLE `+r.ckpt); err != nil {
		return nil
	}
	_ = tx.Commit(ctx)
	return nil
}
