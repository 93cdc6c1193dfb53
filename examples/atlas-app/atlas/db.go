package atlas

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/rekeyhq/rekey/internal/postgres"
)

// Schema creates the patients table. email and ssn hold Encrypt's output.
const Schema = `CREATE TABLE IF NOT EXISTS patients (
	id bigserial PRIMARY KEY,
	name text NOT NULL,
	email text,
	ssn text
)`

// Patient is a decrypted patients row. Email and SSN are nil for NULL.
type Patient struct {
	ID    int64   `json:"id"`
	Name  string  `json:"name"`
	Email *string `json:"email"`
	SSN   *string `json:"ssn"`
}

// DemoPatient returns the demo patient with id i (1-based) as Seed writes it.
func DemoPatient(i int64) Patient {
	email := fmt.Sprintf("patient%d@example.com", i)
	ssn := fmt.Sprintf("900-00-%04d", i)
	return Patient{ID: i, Name: fmt.Sprintf("Demo Patient %d", i), Email: &email, SSN: &ssn}
}

// Connect opens a connection with c.DB (through rekey's postgres.Connect:
// SCRAM/md5 only, connect timeout, errors that never show the password).
func (c *Config) Connect(ctx context.Context) (*pgx.Conn, error) {
	return postgres.Connect(ctx, c.DB)
}

// Seed creates the schema and the demo patients 1..n, encrypted under
// c.EncryptionKey. It is idempotent: rows with those ids that already
// exist are left as they are (so re-seeding after a key rotation does not
// re-encrypt anything).
func Seed(ctx context.Context, c *Config, n int) error {
	if n < 0 {
		return errors.New("atlas: seed count must be >= 0")
	}
	conn, err := c.Connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, Schema); err != nil {
		return fmt.Errorf("atlas: create schema: %s", dbErrClass(err))
	}
	for i := int64(1); i <= int64(n); i++ {
		if err := InsertPatient(ctx, conn, c.EncryptionKey, DemoPatient(i)); err != nil {
			return err
		}
	}
	// Keep the sequence ahead of the explicit ids.
	if _, err := conn.Exec(ctx, `SELECT setval(pg_get_serial_sequence('patients', 'id'), GREATEST((SELECT max(id) FROM patients), 1))`); err != nil {
		return fmt.Errorf("atlas: advance id sequence: %s", dbErrClass(err))
	}
	return nil
}

// InsertPatient writes p (with its ID, unless 0) with email and ssn
// encrypted under key. An existing row with the same ID is left alone.
func InsertPatient(ctx context.Context, conn *pgx.Conn, key []byte, p Patient) error {
	enc := func(s *string) (*string, error) {
		if s == nil {
			return nil, nil
		}
		v, err := Encrypt(key, *s)
		return &v, err
	}
	email, err := enc(p.Email)
	if err != nil {
		return err
	}
	ssn, err := enc(p.SSN)
	if err != nil {
		return err
	}
	if p.ID == 0 {
		_, err = conn.Exec(ctx, `INSERT INTO patients (name, email, ssn) VALUES ($1, $2, $3)`, p.Name, email, ssn)
	} else {
		_, err = conn.Exec(ctx, `INSERT INTO patients (id, name, email, ssn) VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING`, p.ID, p.Name, email, ssn)
	}
	if err != nil {
		// Not %w: a PostgreSQL error detail can quote the row, ciphertexts included.
		return fmt.Errorf("atlas: insert patient: %s", dbErrClass(err))
	}
	return nil
}

// dbErrClass describes err without any text that could quote data: the
// SQLSTATE of a server error, the (scrubbed) text of a postgres.Error, or
// a fixed phrase.
func dbErrClass(err error) string {
	var pgErr *pgconn.PgError
	var connErr *postgres.Error
	switch {
	case errors.As(err, &pgErr):
		return "server error SQLSTATE " + pgErr.Code
	case errors.As(err, &connErr):
		return connErr.Error()
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return "timed out"
	default:
		return "database error"
	}
}
