package sqlite_test

import (
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/sqlite"
	"github.com/rekeyhq/rekey/internal/testkit"
	"github.com/rekeyhq/rekey/seal"
)

var tInc = time.Date(2026, time.December, 8, 10, 0, 0, 0, time.UTC)

// incidentFixture makes a store holding one secret, one open incident
// (INC-1, production) and two outbox items (idempotency keys k1 and k2),
// closes it and returns its path and key.
func incidentFixture(t *testing.T) (string, seal.Key) {
	t.Helper()
	path, key := storePath(t), newKey(t)
	s, err := sqlite.Create(t.Context(), path, key, "")
	if err != nil {
		t.Fatal(err)
	}
	fill(t, s, []fixture{{"production", "JWT_SECRET", 1, []byte("jwt-value-aaaaaaaaaaaaaaaaaaaa")}})
	err = s.Update(t.Context(), func(tx rekey.Tx) error {
		inc := &rekey.Incident{ID: "INC-1", Env: "production", OpenedAt: tInc, OpenedBy: "alice", Reason: "leaked", State: rekey.IncidentOpen,
			Secrets:  []rekey.IncidentSecret{{Name: "JWT_SECRET", ExposedVersion: 1, ExposedFingerprint: "fp1"}},
			Timeline: []rekey.IncidentEvent{{At: tInc, Action: rekey.ActionRotate, Outcome: rekey.OutcomeOK}}}
		if err := tx.PutIncident(inc); err != nil {
			return err
		}
		for _, k := range []string{"k1", "k2"} {
			if _, err := tx.Enqueue(rekey.OutboxItem{Created: tInc, Env: "production", Channel: "security", Event: rekey.EventIncidentOpened,
				IdempotencyKey: k, Body: []byte(`{"incident":"INC-1"}`)}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return path, key
}

// TestIncidentTamper: someone who can write the store file but has no
// master key edits, forges or moves an incident or outbox row; every read
// of it is refused as rekey.ErrCorrupt (CodeAuth), and so is the store's
// full authentication (doctor, recover). An altered outbox row is never
// authenticated anew by MarkAttempt.
func TestIncidentTamper(t *testing.T) {
	incidents := func(tx rekey.Tx) error { _, err := tx.Incidents("", false); return err }
	openProd := func(tx rekey.Tx) error { _, err := tx.Incidents("production", true); return err }
	inc1 := func(tx rekey.Tx) error { _, err := tx.Incident("INC-1"); return err }
	pending := func(tx rekey.Tx) error {
		_, err := tx.Outbox(rekey.OutboxFilter{Pending: true, DueBy: tInc.Add(time.Hour)})
		return err
	}
	for _, c := range []struct {
		name   string
		sql    string
		reads  []func(rekey.Tx) error // in a View: each must fail
		writes []func(rekey.Tx) error // in an Update: each must fail
	}{
		{"incident document edited", `UPDATE incident SET doc = replace(doc, '"leaked"', '"drill"')`, []func(rekey.Tx) error{incidents, inc1, openProd}, nil},
		{"incident closed in its document", `UPDATE incident SET doc = replace(doc, '"state":"open"', '"state":"closed"')`, []func(rekey.Tx) error{inc1, openProd}, nil},
		{"incident state column", `UPDATE incident SET state = 'closed'`, []func(rekey.Tx) error{openProd, incidents}, nil},
		{"incident moved to another environment", `UPDATE incident SET env = 'staging'`, []func(rekey.Tx) error{openProd, inc1}, nil},
		{"incident forged", `INSERT INTO incident(id, env, state, opened, doc, mac) VALUES ('INC-2', 'production', 'open', 0, '{"id":"INC-2","environment":"production","state":"open"}', x'00112233445566778899aabbccddeeff')`,
			[]func(rekey.Tx) error{incidents, openProd}, nil},
		{"incident row copied under another id", `INSERT INTO incident(id, env, state, opened, doc, mac) SELECT 'INC-3', env, state, opened, replace(doc, 'INC-1', 'INC-3'), mac FROM incident`,
			[]func(rekey.Tx) error{incidents, func(tx rekey.Tx) error { _, err := tx.Incident("INC-3"); return err }}, nil},
		{"outbox body edited", `UPDATE outbox SET body = CAST('{"incident":"INC-9"}' AS BLOB) WHERE idem = 'k1'`, []func(rekey.Tx) error{pending},
			[]func(rekey.Tx) error{func(tx rekey.Tx) error { return tx.MarkAttempt(1, tInc, "", tInc) }}},
		{"outbox item marked delivered", `UPDATE outbox SET delivered = 1 WHERE idem = 'k2'`, []func(rekey.Tx) error{pending},
			[]func(rekey.Tx) error{func(tx rekey.Tx) error { return tx.MarkAttempt(2, time.Time{}, "", tInc) }}},
		{"outbox channel redirected", `UPDATE outbox SET channel = 'attacker' WHERE idem = 'k1'`, []func(rekey.Tx) error{pending},
			[]func(rekey.Tx) error{func(tx rekey.Tx) error {
				_, err := tx.Enqueue(rekey.OutboxItem{Channel: "security", IdempotencyKey: "k1"})
				return err
			}}},
		{"outbox item forged", `INSERT INTO outbox(created, env, channel, event, idem, body, next_at, mac) VALUES (1, 'production', 'security', 'incident.opened', 'k9', x'7b7d', 1, x'00')`,
			[]func(rekey.Tx) error{pending}, nil},
		{"outbox attempts of the wrong type", `UPDATE outbox SET attempts = 'many' WHERE idem = 'k2'`, []func(rekey.Tx) error{pending}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			path, key := incidentFixture(t)
			exec(t, path, c.sql)
			s := open(t, path, key) // rows are checked when read
			for i, read := range c.reads {
				wantCorrupt(t, "read "+string(rune('1'+i)), s.View(t.Context(), read))
			}
			for i, write := range c.writes {
				wantCorrupt(t, "write "+string(rune('1'+i)), s.Update(t.Context(), write))
				wantCorrupt(t, "read after the refused write", s.View(t.Context(), pending))
			}
			wantCorrupt(t, "Authenticate", s.Authenticate(t.Context(), false))
		})
	}
}

func wantCorrupt(t *testing.T, what string, err error) {
	t.Helper()
	var re *rekey.Error
	if !errors.Is(err, rekey.ErrCorrupt) || !errors.As(err, &re) || re.Code != rekey.CodeAuth {
		t.Errorf("%s: err = %v, want rekey.ErrCorrupt with CodeAuth", what, err)
	}
}

// tableSQL is the CREATE statement of each incident and outbox table (and
// their indexes) in the store file at path.
func tableSQL(t *testing.T, path string) []string {
	t.Helper()
	db := rawDB(t, path)
	defer db.Close()
	rows, err := db.Query(`SELECT name, sql FROM sqlite_master WHERE tbl_name IN ('incident', 'outbox') AND sql IS NOT NULL ORDER BY name`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var name, q string
		if err := rows.Scan(&name, &q); err != nil {
			t.Fatal(err)
		}
		out = append(out, name+": "+strings.Join(strings.Fields(q), " "))
	}
	return out
}

// TestIncidentTablesAddedOnOpen: a store made before incidents (simulated
// by dropping their tables) gets them on open, as a new store has them,
// with everything it held intact; a store that has them is not written.
func TestIncidentTablesAddedOnOpen(t *testing.T) {
	path, key := incidentFixture(t)
	want := tableSQL(t, path)
	if len(want) < 2 {
		t.Fatalf("a new store has %v, want the incident and outbox tables", want)
	}
	s := open(t, path, key)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	before := fileHash(t, path)
	s = open(t, path, key)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if fileHash(t, path) != before {
		t.Errorf("opening a store that has the tables changed its file")
	}

	exec(t, path, `DROP TABLE incident; DROP TABLE outbox`)
	s = open(t, path, key)
	if got := tableSQL(t, path); !slices.Equal(got, want) {
		t.Errorf("tables after the upgrade on open:\n%v\nwant those of a new store:\n%v", got, want)
	}
	checkFixture(t, s, []fixture{{"production", "JWT_SECRET", 1, []byte("jwt-value-aaaaaaaaaaaaaaaaaaaa")}})
	if n, err := s.VerifyAudit(t.Context()); err != nil || n != 1 {
		t.Errorf("VerifyAudit = %d, %v; want the fixture's entry", n, err)
	}
	if err := s.Authenticate(t.Context(), true); err != nil {
		t.Errorf("Authenticate after the upgrade: %v", err)
	}
	// The new tables work.
	err := s.Update(t.Context(), func(tx rekey.Tx) error {
		if err := tx.PutIncident(&rekey.Incident{ID: "INC-2", Env: "production", OpenedAt: tInc, State: rekey.IncidentOpen}); err != nil {
			return err
		}
		_, err := tx.Enqueue(rekey.OutboxItem{Channel: "security", IdempotencyKey: "k3"})
		return err
	})
	if err != nil {
		t.Fatalf("writing to the added tables: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, path, key)
	err = s.View(t.Context(), func(tx rekey.Tx) error {
		is, err := tx.Incidents("", true)
		if err == nil && (len(is) != 1 || is[0].ID != "INC-2") {
			t.Errorf("incidents after reopening: %d, want INC-2", len(is))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestIncidentTablesFormat2: a format 2 store (testdata) is upgraded to
// format 3 and gets the incident and outbox tables in the same open.
func TestIncidentTablesFormat2(t *testing.T) {
	key, err := seal.ParseKey(strings.TrimSpace(testkit.ReadFile(t, "testdata/format2.key")))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "rekey.db")
	testkit.CopyFile(t, "testdata/format2.db", path)
	s := open(t, path, key)
	err = s.Update(t.Context(), func(tx rekey.Tx) error {
		if err := tx.PutIncident(&rekey.Incident{ID: "INC-1", Env: "production", OpenedAt: tInc, State: rekey.IncidentOpen}); err != nil {
			return err
		}
		_, err := tx.Enqueue(rekey.OutboxItem{Channel: "security", IdempotencyKey: "k1"})
		return err
	})
	if err != nil {
		t.Fatalf("incident and outbox in an upgraded format 2 store: %v", err)
	}
	if err := s.Authenticate(t.Context(), true); err != nil {
		t.Errorf("Authenticate: %v", err)
	}
}
