package reencrypt

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/rekeyhq/rekey"
)

// ErrUndecryptable is wrapped by the error Run (and Rehearse) return when
// some values open with neither the old nor the new key. Those rows were
// left exactly as they were and are listed in Result.Failures; the rest
// of the run completed. The old key must be kept.
var ErrUndecryptable = errors.New("they open with neither the old nor the new key")

// ErrInterrupted is wrapped by the error Run returns when its context was
// cancelled: it stopped after the batch in flight (committed with its
// checkpoint). Run again with the same JobID to resume.
var ErrInterrupted = errors.New("re-encryption interrupted")

// dbError wraps a database error without quoting data: a server error
// keeps its SQLSTATE and its message up to the first ':' (PostgreSQL puts
// offending input after it); its detail (which may show key values) is
// dropped.
func dbError(err error, format string, args ...any) *rekey.Error {
	msg := "reencrypt: " + fmt.Sprintf(format, args...)
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return rekey.Wrap(rekey.CodeInternal, err, "%s", msg)
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		m := pgErr.Message
		if i := strings.IndexByte(m, ':'); i >= 0 {
			m = strings.TrimSpace(m[:i])
		}
		code := rekey.CodeInternal
		switch {
		case strings.HasPrefix(pgErr.Code, "42501"):
			code = rekey.CodeUnsafe
		case strings.HasPrefix(pgErr.Code, "28"):
			code = rekey.CodeAuth
		}
		return &rekey.Error{Code: code, Msg: msg, Err: &pgError{code: pgErr.Code, msg: m, orig: pgErr}}
	}
	return rekey.Wrap(rekey.CodeInternal, err, "%s", msg)
}

// pgError is a scrubbed server error; errors.As still finds the
// *pgconn.PgError.
type pgError struct {
	code, msg string
	orig      *pgconn.PgError
}

func (e *pgError) Error() string { return e.msg + " (SQLSTATE " + e.code + ")" }
func (e *pgError) Unwrap() error { return e.orig }

func pgCode(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}
