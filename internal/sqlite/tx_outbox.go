package sqlite

// This file holds the notification outbox of a transaction: enqueueing
// (idempotent on the item's key), listing and recording delivery attempts.
// Every row carries a MAC under the row key over its id and every column:
// an item forged or altered in the file (its body, its channel, marked
// delivered so that it is never sent) reads as rekey.ErrCorrupt. Lists are
// filtered on authenticated rows, never in SQL on columns as found.

import (
	"crypto/hmac"
	"database/sql"
	"errors"
	"strconv"
	"time"

	"github.com/rekeyhq/rekey"
)

// outboxRow is an outbox row's columns as stored.
type outboxRow struct {
	id, created, nextAt, delivered int64
	attempts                       int64
	env, channel, event, idem, err string
	body, mac                      []byte
}

func (s *DB) outboxMAC(r *outboxRow) ([]byte, error) {
	w, err := s.newMAC("outbox")
	if err != nil {
		return nil, err
	}
	return w.int(r.id).int(r.created).str(r.env).str(r.channel).str(r.event).str(r.idem).bytes(r.body).
		int(r.attempts).int(r.nextAt).int(r.delivered).str(r.err).rowSum(), nil
}

func (r *outboxRow) item() rekey.OutboxItem {
	return rekey.OutboxItem{ID: r.id, Created: fromNanos(r.created), Env: r.env, Channel: r.channel, Event: r.event,
		IdempotencyKey: r.idem, Body: append([]byte(nil), r.body...), Attempts: int(r.attempts),
		NextAttempt: fromNanos(r.nextAt), Delivered: fromNanos(r.delivered), LastError: r.err}
}

const outboxCols = `id, created, env, channel, event, idem, body, attempts, next_at, delivered, last_error, mac`

// scanOutbox reads and authenticates an outbox row.
func (t *txn) scanOutbox(sc interface{ Scan(...any) error }) (*outboxRow, error) {
	r := &outboxRow{}
	if err := sc.Scan(&r.id, &r.created, &r.env, &r.channel, &r.event, &r.idem, &r.body, &r.attempts, &r.nextAt, &r.delivered, &r.err, &r.mac); err != nil {
		return nil, badScan(err, "an outbox row")
	}
	want, err := t.s.outboxMAC(r)
	if err != nil {
		return nil, err
	}
	if !hmac.Equal(want, r.mac) {
		return nil, tampered("outbox item "+strconv.FormatInt(r.id, 10), "fails its authentication (it was edited or inserted)")
	}
	return r, nil
}

// saveOutbox writes r's columns and a new MAC over them to its row.
func (t *txn) saveOutbox(r *outboxRow) error {
	m, err := t.s.outboxMAC(r)
	if err != nil {
		return err
	}
	r.mac = m
	t.dirty = true
	_, err = t.tx.Exec(`UPDATE outbox SET created = ?, env = ?, channel = ?, event = ?, idem = ?, body = ?, attempts = ?, next_at = ?, delivered = ?, last_error = ?, mac = ? WHERE id = ?`,
		r.created, r.env, r.channel, r.event, r.idem, r.body, r.attempts, r.nextAt, r.delivered, r.err, r.mac, r.id)
	return err
}

func (t *txn) Enqueue(o rekey.OutboxItem) (rekey.OutboxItem, error) {
	if !t.rw {
		return rekey.OutboxItem{}, errors.New("enqueue: read-only transaction")
	}
	if o.IdempotencyKey == "" || o.Channel == "" {
		return rekey.OutboxItem{}, rekey.Errorf(rekey.CodeInvalid, "enqueue: an outbox item needs a channel and an idempotency key")
	}
	old, err := t.scanOutbox(t.tx.QueryRow(`SELECT `+outboxCols+` FROM outbox WHERE idem = ?`, o.IdempotencyKey))
	if err == nil {
		return old.item(), nil // delivered at least once, recorded once
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return rekey.OutboxItem{}, err
	}
	if o.Created.IsZero() {
		o.Created = t.s.Now()
	}
	if o.NextAttempt.IsZero() {
		o.NextAttempt = o.Created
	}
	if o.Body == nil {
		o.Body = []byte{}
	}
	r := &outboxRow{created: nanos(o.Created), env: o.Env, channel: o.Channel, event: o.Event, idem: o.IdempotencyKey,
		body: o.Body, attempts: int64(o.Attempts), nextAt: nanos(o.NextAttempt), delivered: nanos(o.Delivered),
		err: rekey.BoundError(o.LastError)}
	res, err := t.tx.Exec(`INSERT INTO outbox(created, env, channel, event, idem, body, next_at, mac) VALUES (?, ?, ?, ?, ?, ?, ?, x'')`,
		r.created, r.env, r.channel, r.event, r.idem, r.body, r.nextAt)
	if err != nil {
		return rekey.OutboxItem{}, err
	}
	if r.id, err = res.LastInsertId(); err != nil {
		return rekey.OutboxItem{}, err
	}
	if err := t.saveOutbox(r); err != nil {
		return rekey.OutboxItem{}, err
	}
	return r.item(), nil
}

// Outbox reads and authenticates every outbox row, oldest first, and keeps
// those f selects.
func (t *txn) Outbox(f rekey.OutboxFilter) ([]rekey.OutboxItem, error) {
	var out []rekey.OutboxItem
	err := eachRow(t.tx, func(rows *sql.Rows) error {
		r, err := t.scanOutbox(rows)
		if err != nil {
			return err
		}
		if it := r.item(); f.Match(it) && (f.Limit <= 0 || len(out) < f.Limit) {
			out = append(out, it)
		}
		return nil
	}, `SELECT `+outboxCols+` FROM outbox ORDER BY id`)
	return out, err
}

func (t *txn) MarkAttempt(id int64, delivered time.Time, lastErr string, next time.Time) error {
	if !t.rw {
		return errors.New("mark attempt: read-only transaction")
	}
	r, err := t.scanOutbox(t.tx.QueryRow(`SELECT `+outboxCols+` FROM outbox WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return notFound("no outbox item %d", id)
	}
	if err != nil {
		return err // an altered row is refused, not authenticated anew
	}
	r.attempts++
	r.delivered, r.err, r.nextAt = nanos(delivered), rekey.BoundError(lastErr), nanos(next)
	return t.saveOutbox(r)
}
