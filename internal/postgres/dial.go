package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"
)

// URLDialer logs in with connection URLs: ParseURL, then Connect. It is how
// rekey's checks log in (verify.Options.Postgres).
type URLDialer struct{}

// Dial parses the connection URL u and returns the function that logs in
// with it. Its error never quotes u.
func (URLDialer) Dial(u string) (func(context.Context) (*pgx.Conn, error), error) {
	p, err := ParseURL(u)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context) (*pgx.Conn, error) { return Connect(ctx, p) }, nil
}

// Hint tells what to do about an error of the login function (see Hint).
func (URLDialer) Hint(err error) string { return Hint(err) }
