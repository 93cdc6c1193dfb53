package sqlite

// This file holds the incident rows of a transaction (writing and reading
// them, each row authenticated) and the additive upgrade that gives a store
// made before them the incident and outbox tables.
//
// An incident row carries a MAC under the row key over its id and every
// column, the JSON document included: someone who can write the store file
// but has no master key cannot forge an incident, nor alter one (its
// timeline, its follow-ups, whether it is closed) without it reading as
// rekey.ErrCorrupt. Unlike secrets and rotations, incident and outbox rows
// are not in the manifest: a deleted row, or a row put back to an older
// copy of itself, is not detected (SECURITY.md).

import (
	"context"
	"crypto/hmac"
	"database/sql"
	"encoding/json"
	"errors"
	"sort"
	"strings"
	"time"

	"github.com/rekeyhq/rekey"
)

// incidentSchemaMark starts the part of schema.sql that ensureIncidentTables
// runs on a store made before it.
const incidentSchemaMark = "-- Since issue 15"

// incidentSchema is that part: CREATE ... IF NOT EXISTS statements only.
var incidentSchema = func() string {
	i := strings.Index(schema, incidentSchemaMark)
	if i < 0 {
		panic("schema.sql: no " + incidentSchemaMark + " part")
	}
	return schema[i:]
}()

// ensureIncidentTables adds the incident and outbox tables to a store made
// before them, in one transaction. A store that has both is not written.
func (s *DB) ensureIncidentTables(ctx context.Context) error {
	has := func(q queryer) (bool, error) {
		var n int
		err := q.QueryRow(`SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN ('incident', 'outbox')`).Scan(&n)
		return n == 2, err
	}
	if ok, err := has(s.db); ok || err != nil {
		return mapErr(err)
	}
	return s.tx(ctx, func(tx *sql.Tx) error {
		if ok, err := has(tx); ok || err != nil {
			return err // another process added them meanwhile
		}
		_, err := tx.Exec(incidentSchema)
		return err
	})
}

// incidentMAC covers every column of an incident row as stored.
func (s *DB) incidentMAC(id, env, state string, opened int64, doc string) ([]byte, error) {
	w, err := s.newMAC("incident")
	if err != nil {
		return nil, err
	}
	return w.str(id).str(env).str(state).int(opened).str(doc).rowSum(), nil
}

func (t *txn) PutIncident(i *rekey.Incident) error {
	if !t.rw {
		return errors.New("put incident: read-only transaction")
	}
	if i.ID == "" || i.Env == "" {
		return rekey.Errorf(rekey.CodeInvalid, "put incident: an incident needs an ID and an environment")
	}
	doc, err := json.Marshal(i)
	if err != nil {
		return err
	}
	opened := nanos(i.OpenedAt)
	m, err := t.s.incidentMAC(i.ID, i.Env, string(i.State), opened, string(doc))
	if err != nil {
		return err
	}
	t.dirty = true
	_, err = t.tx.Exec(`INSERT INTO incident(id, env, state, opened, doc, mac) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT(id) DO UPDATE SET env = excluded.env, state = excluded.state, opened = excluded.opened, doc = excluded.doc, mac = excluded.mac`,
		i.ID, i.Env, string(i.State), opened, string(doc), m)
	return err
}

const incidentCols = `id, env, state, opened, doc, mac`

// scanIncident reads and authenticates an incident row.
func (t *txn) scanIncident(sc interface{ Scan(...any) error }) (*rekey.Incident, error) {
	var id, env, state, doc string
	var opened int64
	var m []byte
	if err := sc.Scan(&id, &env, &state, &opened, &doc, &m); err != nil {
		return nil, badScan(err, "an incident row")
	}
	want, err := t.s.incidentMAC(id, env, state, opened, doc)
	if err != nil {
		return nil, err
	}
	if !hmac.Equal(want, m) {
		return nil, tampered("incident "+id, "fails its authentication (it was edited or inserted)")
	}
	i := &rekey.Incident{}
	if err := json.Unmarshal([]byte(doc), i); err != nil {
		return nil, corrupt("incident " + id)
	}
	// The columns are the document's, for queries; the MAC covers both.
	if i.ID != id || i.Env != env || string(i.State) != state || nanos(i.OpenedAt) != opened {
		return nil, corrupt("incident " + id + ": its columns are not its document's")
	}
	return i, nil
}

func (t *txn) Incident(id string) (*rekey.Incident, error) {
	i, err := t.scanIncident(t.tx.QueryRow(`SELECT `+incidentCols+` FROM incident WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("no incident %s", id)
	}
	return i, err
}

// Incidents reads and authenticates every incident row, then filters: the
// choice is made on authenticated rows, never on columns as found (an
// edited state or environment must not hide an open incident).
func (t *txn) Incidents(env string, open bool) ([]*rekey.Incident, error) {
	var out []*rekey.Incident
	if err := eachRow(t.tx, func(rows *sql.Rows) error {
		i, err := t.scanIncident(rows)
		if err != nil {
			return err
		}
		if (env == "" || i.Env == env) && (!open || i.IsOpen()) {
			out = append(out, i)
		}
		return nil
	}, `SELECT `+incidentCols+` FROM incident`); err != nil {
		return nil, err
	}
	sort.SliceStable(out, func(a, b int) bool {
		if !out[a].OpenedAt.Equal(out[b].OpenedAt) {
			return out[a].OpenedAt.After(out[b].OpenedAt)
		}
		return out[a].ID > out[b].ID
	})
	return out, nil
}

// verifyIncidentRows authenticates every incident and outbox row (doctor,
// recover: Authenticate).
func (t *txn) verifyIncidentRows() error {
	if _, err := t.Incidents("", false); err != nil {
		return err
	}
	_, err := t.Outbox(rekey.OutboxFilter{})
	return err
}

// nanos is t as unix nanoseconds, 0 for the zero time.
func nanos(x time.Time) int64 {
	if x.IsZero() {
		return 0
	}
	return x.UnixNano()
}

// fromNanos reverses nanos.
func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}
