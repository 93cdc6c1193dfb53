package verify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/rekeyhq/rekey"
)

// This file holds the checks that log in to PostgreSQL: postgres (SELECT
// 1), sql (one value, read-only) and decrypt-sample. They log in through
// Options.Postgres, which the postgres adapter implements.

// connect logs in with the URL held by name.
func (r *checkRun) connect(ctx context.Context, name string) (*pgx.Conn, *attemptErr) {
	pg := r.o.Postgres
	if pg == nil {
		return nil, &attemptErr{msg: "cannot log in with " + name + ": no PostgreSQL client", final: true}
	}
	v := r.values[name]
	login, err := pg.Dial(v.RevealString())
	if err != nil {
		// Dial errors never quote the URL.
		return nil, &attemptErr{msg: name + " is not a usable connection URL: " + err.Error(), hint: "it must be a postgres:// URL", final: true}
	}
	conn, err := login(ctx)
	if err != nil {
		hint := pg.Hint(err)
		if hint == "" {
			hint = "check " + name
		}
		return nil, fail(hint, "log in with %s: %s", name, err.Error())
	}
	return conn, nil
}

func (r *checkRun) postgres(ctx context.Context, p *rekey.PostgresCheck) (string, *attemptErr) {
	conn, err := r.connect(ctx, p.URL)
	if err != nil {
		return "", err
	}
	defer conn.Close(context.Background())
	var one int
	if qerr := conn.QueryRow(ctx, "SELECT 1").Scan(&one); qerr != nil {
		return "", fail("check the server's log", "SELECT 1 with %s: %s", p.URL, pgErrText(qerr))
	}
	return "logged in with " + p.URL, nil
}

// pgErrText describes a query error without framing that could quote SQL.
func pgErrText(err error) string {
	var pe interface{ SQLState() string }
	if errors.As(err, &pe) {
		return err.Error()
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return "timeout"
	}
	return err.Error()
}

// readOnly runs fn in a read-only transaction that is rolled back.
func readOnly(ctx context.Context, conn *pgx.Conn, fn func(pgx.Tx) error) error {
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return err
	}
	defer tx.Rollback(context.Background())
	return fn(tx)
}

func (r *checkRun) sql(ctx context.Context, s *rekey.SQLCheck) (string, *attemptErr) {
	conn, err := r.connect(ctx, s.URL)
	if err != nil {
		return "", err
	}
	defer conn.Close(context.Background())
	var got string
	var rowsN, cols int
	qerr := readOnly(ctx, conn, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, s.Query)
		if err != nil {
			return err
		}
		defer rows.Close()
		cols = len(rows.FieldDescriptions())
		for rows.Next() {
			rowsN++
			if rowsN > 1 {
				continue
			}
			raw := rows.RawValues()
			vals, err := rows.Values()
			if err != nil {
				return err
			}
			if len(raw) == 0 {
				continue
			}
			switch {
			case raw[0] == nil:
				got = "NULL"
			case s.Expect != string(raw[0]) && fmt.Sprint(vals[0]) == s.Expect:
				got = s.Expect // true for t, and other Go forms
			default:
				got = string(raw[0])
			}
		}
		return rows.Err()
	})
	if qerr != nil {
		return "", fail("run the query by hand (it runs read-only)", "query with %s failed: %s", s.URL, pgErrText(qerr))
	}
	switch {
	case cols != 1:
		return "", &attemptErr{msg: fmt.Sprintf("the query returns %d columns, want one", cols), hint: "select one value, e.g. SELECT count(*) FROM users", final: true}
	case rowsN != 1:
		return "", fail("select one value, e.g. SELECT count(*) FROM users", "the query returned %d rows, want one", rowsN)
	case got != s.Expect && !(got == "NULL" && strings.EqualFold(s.Expect, "null")):
		shown := "another value"
		if len(got) <= 40 {
			shown = strconv.Quote(got)
		}
		return "", fail("check the data, or expect in the check", "the query returned %s, want %s", shown, strconv.Quote(s.Expect))
	}
	return "returned " + strconv.Quote(s.Expect), nil
}

func (r *checkRun) decryptSample(ctx context.Context, s *rekey.DecryptSample) (string, *attemptErr) {
	if r.o.Opener == nil {
		return "", &attemptErr{msg: "no codec to open values with", hint: "this rekey cannot open " + orDefault(s.Codec, "these") + " values", final: true}
	}
	open, oerr := r.o.Opener(*s, r.values[s.Key])
	if oerr != nil {
		return "", &attemptErr{msg: "cannot use " + s.Key + ": " + errText(oerr), hint: "check key, codec and encoding in the check", final: true}
	}
	var openPrev func([]byte) error
	if pv, ok := r.o.Previous[s.Key]; ok {
		if openPrev, oerr = r.o.Opener(*s, pv); oerr != nil {
			return "", &attemptErr{msg: "cannot use the previous " + s.Key + ": " + errText(oerr), hint: "check key, codec and encoding in the check", final: true}
		}
	}
	conn, err := r.connect(ctx, s.URL)
	if err != nil {
		return "", err
	}
	defer conn.Close(context.Background())
	var tbl pgx.Identifier = strings.Split(s.Table, ".")
	q := "SELECT " + pgx.Identifier{s.Column}.Sanitize() + " FROM " + tbl.Sanitize() +
		" WHERE " + pgx.Identifier{s.Column}.Sanitize() + " IS NOT NULL LIMIT " + strconv.Itoa(s.Rows)
	var n, bad, underPrev int
	var firstErr string
	qerr := readOnly(ctx, conn, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, q)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var ct []byte
			if err := rows.Scan(&ct); err != nil {
				return err
			}
			n++
			if err := open(bytes.Clone(ct)); err != nil {
				if openPrev != nil && openPrev(bytes.Clone(ct)) == nil {
					underPrev++
					continue
				}
				bad++
				if firstErr == "" {
					firstErr = errText(err)
				}
			}
		}
		return rows.Err()
	})
	if qerr != nil {
		return "", fail("check column (table.column) and that the role may read it", "read %s.%s with %s: %s", s.Table, s.Column, s.URL, pgErrText(qerr))
	}
	if n == 0 {
		return "no values to sample", nil
	}
	if bad > 0 {
		return "", fail("values written under another key remain: finish the re-encryption before retiring the previous key, or check codec and encoding",
			"%d of %d sampled values of %s.%s do not open with the current %s (%s)", bad, n, s.Table, s.Column, s.Key, firstErr)
	}
	if underPrev > 0 {
		r.okHint = "the application reads them with " + s.Key + "'s previous key (its NAME_PREVIOUS) until `rekey reencrypt " + s.Key + "` moves them"
		return fmt.Sprintf("%d sampled values open (%d with the previous %s: their re-encryption is pending)", n, underPrev, s.Key), nil
	}
	return fmt.Sprintf("%d sampled values open", n), nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
