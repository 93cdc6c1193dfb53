package reencrypt

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/rekeyhq/rekey"
)

// table is a TableSpec resolved against the catalog, with its statements.
type table struct {
	idx         int // position in the run (names its prepared statements)
	spec        TableSpec
	oid         uint32
	schema      string
	name        string
	display     string   // schema.table, as shown in results
	ident       string   // "schema"."table"
	pk          []column // key columns, in key order
	cols        []column // encrypted columns, in config order
	bytea       bool     // the encrypted columns are bytea (else text-like)
	partitioned bool     // a partitioned table (rows are found by key, not ctid)

	selectFirst, selectNext, reread, update string
	nparams                                 int // parameters of update
}

type column struct {
	name string
	typ  string // format_type without typmod: the cast target for keys
}

// resolveTables looks every spec up in the catalog and checks what Run
// needs: the table exists, its key is unique and not null, the encrypted
// columns have the type the encoding needs, and the session may read and
// update it.
func resolveTables(ctx context.Context, conn *pgx.Conn, specs []TableSpec, encoding string, writable bool) ([]*table, error) {
	var out []*table
	seen := map[uint32]bool{}
	for _, sp := range specs {
		t, err := resolveTable(ctx, conn, sp, encoding, writable)
		if err != nil {
			return nil, err
		}
		if seen[t.oid] {
			return nil, invalid("table %s is listed under two names", t.display).WithHint("write each table the same way in columns")
		}
		seen[t.oid] = true
		t.idx = len(out)
		t.buildSQL()
		out = append(out, t)
	}
	return out, nil
}

func resolveTable(ctx context.Context, conn *pgx.Conn, sp TableSpec, encoding string, writable bool) (*table, error) {
	qualified := quoteIdent(sp.Table)
	if sp.Schema != "" {
		qualified = quoteIdent(sp.Schema) + "." + qualified
	}
	t := &table{spec: sp}
	var kind string
	var oid *uint32
	err := conn.QueryRow(ctx, `SELECT c.oid, n.nspname, c.relname, c.relkind::text
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.oid = to_regclass($1)`, qualified).Scan(&oid, &t.schema, &t.name, &kind)
	if err == pgx.ErrNoRows || (err == nil && oid == nil) {
		return nil, tableNotFound(ctx, conn, sp)
	}
	if err != nil {
		return nil, dbError(err, "look up table %s", sp.Name())
	}
	t.oid = *oid
	t.display = displayIdent(t.schema) + "." + displayIdent(t.name)
	t.ident = quoteIdent(t.schema) + "." + quoteIdent(t.name)
	if kind != "r" && kind != "p" {
		return nil, invalid("%s is not a table", t.display)
	}
	t.partitioned = kind == "p"

	attrs, err := tableColumns(ctx, conn, t.oid)
	if err != nil {
		return nil, dbError(err, "read the columns of %s", t.display)
	}
	for _, name := range sp.Columns {
		a, ok := attrs[name]
		if !ok {
			return nil, columnNotFound("column", t, name, attrs)
		}
		if a.generated {
			return nil, invalid("column %s.%s is generated: it cannot be updated", t.display, displayIdent(name))
		}
		switch {
		case encoding == EncodingBytea && a.baseType != "bytea":
			return nil, invalid("column %s.%s is %s, but encoding bytea needs a bytea column", t.display, displayIdent(name), a.typ)
		case encoding != EncodingBytea && a.baseType != "text" && a.baseType != "character varying":
			return nil, invalid("column %s.%s is %s, but encoding %s needs a text or varchar column", t.display, displayIdent(name), a.typ, encoding).
				WithHint("use encoding bytea for bytea columns")
		}
		t.cols = append(t.cols, column{name: name, typ: a.typ})
	}
	t.bytea = encoding == EncodingBytea

	pkNames := sp.PK
	if pkNames == nil {
		pkNames, err = primaryKey(ctx, conn, t.oid)
		if err != nil {
			return nil, dbError(err, "read the primary key of %s", t.display)
		}
		if len(pkNames) == 0 {
			return nil, invalid("table %s has no primary key", t.display).
				WithHint(`name unique, not-null key columns in the column entry: "%s(id).%s"`, t.spec.Name(), displayIdent(sp.Columns[0]))
		}
	} else {
		for _, p := range pkNames {
			a, ok := attrs[p]
			if !ok {
				return nil, columnNotFound("key column", t, p, attrs)
			}
			if !a.notNull {
				return nil, invalid("key column %s.%s may be NULL", t.display, displayIdent(p)).
					WithHint("key columns must be NOT NULL and covered by a unique index")
			}
		}
		ok, err := hasUniqueIndex(ctx, conn, t.oid, pkNames)
		if err != nil {
			return nil, dbError(err, "read the indexes of %s", t.display)
		}
		if !ok {
			return nil, invalid("no unique index of %s covers exactly (%s)", t.display, strings.Join(pkNames, ", ")).
				WithHint("key columns must identify one row: create a unique index on them, or use the primary key")
		}
	}
	for _, p := range pkNames {
		t.pk = append(t.pk, column{name: p, typ: attrs[p].baseCast})
	}

	var canSelect, canUpdate bool
	if err := conn.QueryRow(ctx, `SELECT has_table_privilege($1::oid, 'SELECT'), has_table_privilege($1::oid, 'UPDATE')`, t.oid).
		Scan(&canSelect, &canUpdate); err != nil {
		return nil, dbError(err, "check privileges on %s", t.display)
	}
	if !canSelect || (writable && !canUpdate) {
		return nil, rekey.Errorf(rekey.CodeUnsafe, "reencrypt: the database role may not read and update %s", t.display).
			WithHint("grant SELECT and UPDATE on it to the role rekey connects as")
	}
	return t, nil
}

// tableNotFound is the error for a configured table the database does not
// have: by name, with the nearest of its tables (a typo).
func tableNotFound(ctx context.Context, conn *pgx.Conn, sp TableSpec) *rekey.Error {
	e := rekey.Errorf(rekey.CodeNotFound, "reencrypt: table %s not found", sp.Name())
	names, err := tableNames(ctx, conn, sp.Schema)
	if err != nil {
		return dbError(err, "list the tables")
	}
	if near := nearest(sp.Table, names); len(near) > 0 {
		return e.WithHint("did you mean %s? (the columns of the reencrypt section name table.column)", strings.Join(near, " or "))
	}
	return e.WithHint("check the columns of the reencrypt section and the database's search_path")
}

// columnNotFound is the error for a configured column t does not have:
// by name, with the nearest of its columns (a typo), else all of them.
func columnNotFound(what string, t *table, name string, attrs map[string]attr) *rekey.Error {
	e := rekey.Errorf(rekey.CodeNotFound, "reencrypt: %s %s.%s not found", what, t.display, displayIdent(name))
	var have []string
	for a := range attrs {
		have = append(have, a)
	}
	sort.Strings(have)
	if near := nearest(name, have); len(near) > 0 {
		return e.WithHint("did you mean %s.%s?", t.display, strings.Join(near, " or "+t.display+"."))
	}
	for i, h := range have {
		have[i] = displayIdent(h)
	}
	return e.WithHint("%s has the columns %s", t.display, strings.Join(have, ", "))
}

// nearest lists the names within a small edit distance of name (case
// aside), nearest first, at most three: rekey.EditDistance, as the config's
// and the secret names' did-you-mean.
func nearest(name string, names []string) []string {
	type cand struct {
		name string
		d    int
	}
	var cs []cand
	limit := 1 + len([]rune(name))/5
	for _, n := range names {
		if d := rekey.EditDistance(strings.ToLower(name), strings.ToLower(n)); d <= limit && n != name {
			cs = append(cs, cand{n, d})
		}
	}
	sort.SliceStable(cs, func(i, j int) bool { return cs[i].d < cs[j].d })
	var out []string
	for i := 0; i < len(cs) && i < 3; i++ {
		out = append(out, displayIdent(cs[i].name))
	}
	return out
}

// tableNames lists the tables of schema, or those visible on the search
// path when schema is "".
func tableNames(ctx context.Context, conn *pgx.Conn, schema string) ([]string, error) {
	rows, err := conn.Query(ctx, `SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind IN ('r', 'p') AND CASE WHEN $1 = '' THEN pg_table_is_visible(c.oid) ELSE n.nspname = $1 END
		ORDER BY 1`, schema)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

type attr struct {
	typ       string // format_type with typmod
	baseCast  string // format_type without typmod
	baseType  string // the type under any domains, without typmod
	notNull   bool
	generated bool
}

func tableColumns(ctx context.Context, conn *pgx.Conn, oid uint32) (map[string]attr, error) {
	rows, err := conn.Query(ctx, `WITH RECURSIVE a AS (
			SELECT attname, atttypid, atttypmod, attnotnull, attgenerated <> '' AS generated
			FROM pg_attribute WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped),
		base(attname, typid) AS (
			SELECT attname, atttypid FROM a
			UNION ALL
			SELECT b.attname, t.typbasetype FROM base b JOIN pg_type t ON t.oid = b.typid WHERE t.typtype = 'd')
		SELECT a.attname, format_type(a.atttypid, a.atttypmod), format_type(a.atttypid, NULL),
			(SELECT format_type(b.typid, NULL) FROM base b JOIN pg_type t ON t.oid = b.typid
				WHERE b.attname = a.attname AND t.typtype <> 'd'),
			a.attnotnull, a.generated
		FROM a`, oid)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]attr{}
	for rows.Next() {
		var name string
		var a attr
		var base *string
		if err := rows.Scan(&name, &a.typ, &a.baseCast, &base, &a.notNull, &a.generated); err != nil {
			return nil, err
		}
		if base != nil {
			a.baseType = *base
		}
		out[name] = a
	}
	return out, rows.Err()
}

func primaryKey(ctx context.Context, conn *pgx.Conn, oid uint32) ([]string, error) {
	rows, err := conn.Query(ctx, `SELECT a.attname FROM pg_index i
		CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
		JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
		WHERE i.indrelid = $1 AND i.indisprimary ORDER BY k.ord`, oid)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// hasUniqueIndex reports whether a valid, non-partial unique index (or the
// primary key) of the table has exactly cols as its key columns.
func hasUniqueIndex(ctx context.Context, conn *pgx.Conn, oid uint32, cols []string) (bool, error) {
	rows, err := conn.Query(ctx, `SELECT array_agg(a.attname::text ORDER BY a.attname) FROM pg_index i
		CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
		LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
		WHERE i.indrelid = $1 AND i.indisunique AND i.indisvalid AND i.indpred IS NULL AND i.indexprs IS NULL
			AND k.ord <= i.indnkeyatts
		GROUP BY i.indexrelid`, oid)
	if err != nil {
		return false, err
	}
	sets, err := pgx.CollectRows(rows, pgx.RowTo[[]string])
	if err != nil {
		return false, err
	}
	want := append([]string(nil), cols...)
	sort.Strings(want)
	for _, s := range sets {
		if equalStrings(s, want) {
			return true, nil
		}
	}
	return false, nil
}

func (t *table) valueCast() string {
	if t.bytea {
		return "bytea"
	}
	return "text"
}

// buildSQL prepares the statements of a table:
//
//	selectFirst/selectNext  a batch in key order (keyset pagination)
//	reread                  rows by key, locked (the CAS revisit)
//	update                  the compare-and-swap write of a batch
//
// Every row is read with its version (ctid, xmin). The update finds a row
// by ctid (a direct heap fetch; by key on partitioned tables) and writes
// it only if its key and xmin are still the ones read: xmin changes with
// every update of the row (the new version is written by another
// transaction), so an equal xmin means the values are the ones read.
// Keys travel as text and are cast back to their type; values as text (or
// bytea).
func (t *table) buildSQL() {
	vc := t.valueCast()
	sel := []string{"t.ctid", "t.xmin"}
	for _, p := range t.pk {
		sel = append(sel, "t."+quoteIdent(p.name)+"::text")
	}
	for _, c := range t.cols {
		sel = append(sel, "t."+quoteIdent(c.name)+"::"+vc)
	}
	var order, keyCols, keyArgs []string
	for i, p := range t.pk {
		order = append(order, "t."+quoteIdent(p.name))
		keyCols = append(keyCols, "t."+quoteIdent(p.name))
		keyArgs = append(keyArgs, "$"+strconv.Itoa(i+1)+"::"+p.typ)
	}
	base := "SELECT " + strings.Join(sel, ", ") + " FROM " + t.ident + " AS t"
	limit := " ORDER BY " + strings.Join(order, ", ") + " LIMIT $"
	t.selectFirst = base + limit + "1"
	if len(t.pk) == 1 {
		t.selectNext = base + " WHERE " + keyCols[0] + " > " + keyArgs[0] + limit + strconv.Itoa(len(t.pk)+1)
	} else {
		t.selectNext = base + " WHERE (" + strings.Join(keyCols, ", ") + ") > (" + strings.Join(keyArgs, ", ") + ")" + limit + strconv.Itoa(len(t.pk)+1)
	}

	n := 0
	arg := func(typ string) string { n++; return "$" + strconv.Itoa(n) + "::" + typ + "[]" }
	var arrays, names, join []string
	for i, p := range t.pk {
		arrays = append(arrays, arg("text"))
		names = append(names, "k"+strconv.Itoa(i))
		join = append(join, "t."+quoteIdent(p.name)+" = v.k"+strconv.Itoa(i)+"::"+p.typ)
	}
	t.reread = "SELECT " + strings.Join(sel, ", ") + " FROM " + t.ident + " AS t JOIN unnest(" + strings.Join(arrays, ", ") +
		") AS v(" + strings.Join(names, ", ") + ") ON " + strings.Join(join, " AND ") + " FOR NO KEY UPDATE OF t"

	// v(c, x, k0.., n0, n1, ..): the row version read, its key, and per
	// column the value to write (NULL: leave it as it is).
	n = 0
	arrays = []string{arg("tid"), arg("xid")}
	names = []string{"c", "x"}
	for i := range t.pk {
		arrays = append(arrays, arg("text"))
		names = append(names, "k"+strconv.Itoa(i))
	}
	where := []string{"t.xmin = v.x"}
	if !t.partitioned {
		// A direct heap fetch; partitioned tables repeat ctids across
		// partitions, so their rows are found by key.
		where = []string{"t.ctid = v.c", "t.xmin = v.x"}
	}
	where = append(where, join...)
	var set []string
	for i, c := range t.cols {
		nn := "v.n" + strconv.Itoa(i)
		arrays = append(arrays, arg(vc))
		names = append(names, "n"+strconv.Itoa(i))
		set = append(set, quoteIdent(c.name)+" = COALESCE("+nn+", t."+quoteIdent(c.name)+")")
	}
	t.nparams = n
	t.update = fmt.Sprintf("UPDATE %s AS t SET %s FROM unnest(%s) AS v(%s) WHERE %s",
		t.ident, strings.Join(set, ", "), strings.Join(arrays, ", "), strings.Join(names, ", "), strings.Join(where, " AND "))
}

// querier runs a query: a connection or a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// readAfter reads the next limit rows of t in key order: the first ones,
// or those after the key lastPK.
func (t *table) readAfter(ctx context.Context, q querier, lastPK []string, limit int) (pgx.Rows, error) {
	if lastPK == nil {
		return q.Query(ctx, t.selectFirst, limit)
	}
	args := make([]any, 0, len(lastPK)+1)
	for _, v := range lastPK {
		args = append(args, v)
	}
	return q.Query(ctx, t.selectNext, append(args, limit)...)
}
