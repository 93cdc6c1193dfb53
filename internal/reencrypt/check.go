package reencrypt

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rekeyhq/rekey"
)

// ErrNoCreateDB is wrapped by the error Rehearse returns when the role
// that makes the copy may not create databases (it needs CREATEDB).
var ErrNoCreateDB = errors.New("the role may not create databases")

// Check looks every configured table and column of cfg up in the
// database of dsn, reading the catalog only, and returns the first that
// does not resolve: a table or column not found is named, with the
// nearest names the database has (a typo). A rotation of a data key runs
// it before it creates anything; Run, Count and Rehearse run the same
// lookups first.
func Check(ctx context.Context, dsn string, cfg rekey.ReencryptSpec) error {
	c, specs, err := prepare(cfg)
	if err != nil {
		return err
	}
	cc, err := Job{DSN: dsn}.connConfig()
	if err != nil {
		return err
	}
	_, err = checkTables(ctx, cc, specs, c.Encoding)
	return err
}

// checkTables resolves specs in the database of cc, on a connection of
// its own (closed on return); pid is that connection's server process.
func checkTables(ctx context.Context, cc *pgx.ConnConfig, specs []TableSpec, encoding string) (pid uint32, err error) {
	conn, err := connect(ctx, cc)
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.Background())
	_, err = resolveTables(ctx, conn, specs, encoding, false)
	return conn.PgConn().PID(), err
}

// waitGone waits (a few seconds at most) until the server process pid has
// left pg_stat_activity: a closed session's backend ends shortly after.
func waitGone(ctx context.Context, admin *pgx.Conn, pid uint32) {
	for i := 0; i < 100; i++ {
		var n int
		if err := admin.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE pid = $1`, int32(pid)).Scan(&n); err != nil || n == 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// SameServer reports whether two connection URLs name the same server
// (host and port; the database and the role may differ). A URL that does
// not parse is on no server.
func SameServer(a, b rekey.Value) bool {
	ca, err1 := pgx.ParseConfig(a.RevealString())
	cb, err2 := pgx.ParseConfig(b.RevealString())
	return err1 == nil && err2 == nil && ca.Host == cb.Host && ca.Port == cb.Port
}
