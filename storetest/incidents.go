package storetest

// The tests of incidents and of the notification outbox.

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rekeyhq/rekey"
)

// fullIncident is an incident with every field, and every field of its
// secrets, events and follow-ups, set (checkAllSet makes sure of it).
func fullIncident(id, env string, opened time.Time) *rekey.Incident {
	paris := time.FixedZone("CET", 3600)
	return &rekey.Incident{
		ID: id, Env: env, OpenedAt: opened.In(paris), OpenedBy: "alice@laptop",
		Reason: "JWT secret pasted in a public channel", State: rekey.IncidentClosed,
		ClosedAt: opened.Add(26 * time.Hour), ClosedBy: "bob@ci", CloseReason: "provider key rotated by hand", Forced: true, Stop: true,
		Secrets: []rekey.IncidentSecret{
			{Name: "JWT_SECRET", ExposedVersion: 3, ExposedFingerprint: "fp:aa11", Replacement: 4, ReplacementFingerprint: "fp:bb22"},
			{Name: "DATABASE_PASSWORD", ExposedVersion: 7, ExposedFingerprint: "fp:cc33", Replacement: 8, ReplacementFingerprint: "fp:dd44"},
		},
		Timeline: []rekey.IncidentEvent{
			{At: opened.Add(time.Millisecond), Action: rekey.ActionRotate, Secret: "JWT_SECRET", Outcome: rekey.OutcomeOK, Detail: "v3 → v4"},
			{At: opened.Add(2*time.Second + 7), Action: rekey.ActionProveDead, Secret: "DATABASE_PASSWORD", Outcome: rekey.OutcomeFailed, Detail: "old password still accepted"},
		},
		FollowUps: []rekey.FollowUp{
			{Key: rekey.FollowUpRotateAll, Title: "Rotate every other secret", Due: opened.Add(24 * time.Hour), Done: true,
				DoneAt: opened.Add(3 * time.Hour), DoneBy: "alice@laptop", Note: "rotation 20250314T1000Z-ab12"},
		},
	}
}

// checkAllSet fails if a field of v (or of a struct in a slice of it) is
// zero: a field added to the domain later is then added to the fixture, and
// its round trip is checked.
func checkAllSet(t *testing.T, what string, v reflect.Value) {
	t.Helper()
	for i := range v.NumField() {
		f, name := v.Field(i), what+"."+v.Type().Field(i).Name
		if f.IsZero() {
			t.Errorf("the fixture leaves %s zero: set it, so that its round trip is checked", name)
			continue
		}
		if f.Kind() == reflect.Slice && f.Type().Elem().Kind() == reflect.Struct {
			for j := range f.Len() {
				checkAllSet(t, fmt.Sprintf("%s[%d]", name, j), f.Index(j))
			}
		}
	}
}

func putIncident(t *testing.T, s rekey.Store, i *rekey.Incident) {
	t.Helper()
	update(t, s, func(tx rekey.Tx) error { return tx.PutIncident(i) })
}

func getIncident(t *testing.T, s rekey.Store, id string) *rekey.Incident {
	t.Helper()
	return inTx(t, s, view, "Incident("+id+")", func(tx rekey.Tx) (*rekey.Incident, error) { return tx.Incident(id) })
}

func listIncidents(t *testing.T, s rekey.Store, env string, open bool) []string {
	t.Helper()
	is := inTx(t, s, view, fmt.Sprintf("Incidents(%q, %v)", env, open), func(tx rekey.Tx) ([]*rekey.Incident, error) {
		return tx.Incidents(env, open)
	})
	ids := make([]string, 0, len(is))
	for _, i := range is {
		ids = append(ids, i.ID)
	}
	return ids
}

func testIncidentRoundTrip(t *testing.T, s rekey.Store) {
	in := fullIncident("INC-20250314-0a1b2c", "prod", t0)
	checkAllSet(t, "Incident", reflect.ValueOf(*in))
	putIncident(t, s, in)
	if d := cmp.Diff(in, getIncident(t, s, in.ID), rotationOpts); d != "" {
		t.Errorf("Incident after insert (-put +read):\n%s", d)
	}
	// PutIncident replaces the whole record: reopened, a timeline event
	// more, the close fields cleared.
	in.State, in.ClosedAt, in.ClosedBy, in.CloseReason, in.Forced = rekey.IncidentOpen, time.Time{}, "", "", false
	in.Timeline = append(in.Timeline, rekey.IncidentEvent{At: t0.Add(time.Minute), Action: rekey.ActionNotify, Outcome: rekey.OutcomeSkipped})
	in.FollowUps[0].Done, in.FollowUps[0].DoneAt = false, time.Time{}
	putIncident(t, s, in)
	got := getIncident(t, s, in.ID)
	if d := cmp.Diff(in, got, rotationOpts); d != "" {
		t.Errorf("Incident after replace (-put +read):\n%s", d)
	}
	if !got.ClosedAt.IsZero() || !got.IsOpen() {
		t.Errorf("replaced incident: closed at %v, open %v; want zero and open", got.ClosedAt, got.IsOpen())
	}
	if ids := listIncidents(t, s, "", false); !slices.Equal(ids, []string{in.ID}) {
		t.Errorf("Incidents after a replace: %v, want the one incident", ids)
	}
	err := s.View(ctx(t), func(tx rekey.Tx) error {
		_, err := tx.Incident("INC-20250314-ffffff")
		return err
	})
	wantNotFound(t, "Incident of an unknown id", err)
	for _, bad := range []*rekey.Incident{{Env: "prod"}, {ID: "INC-x"}} {
		if err := s.Update(ctx(t), func(tx rekey.Tx) error { return tx.PutIncident(bad) }); err == nil {
			t.Errorf("PutIncident(ID %q, Env %q) succeeded, want an error", bad.ID, bad.Env)
		}
	}
}

func testIncidents(t *testing.T, s rekey.Store) {
	mk := func(id, env string, at time.Duration, open bool) *rekey.Incident {
		i := &rekey.Incident{ID: id, Env: env, OpenedAt: t0.Add(at), OpenedBy: "alice", State: rekey.IncidentClosed}
		if open {
			i.State = rekey.IncidentOpen
		}
		return i
	}
	// Inserted out of order; two opened at the same instant (the greater ID first).
	for _, i := range []*rekey.Incident{
		mk("INC-b", "prod", time.Hour, true),
		mk("INC-a", "prod", 0, false),
		mk("INC-d", "staging", 2*time.Hour, true),
		mk("INC-c", "prod", 3*time.Hour, false),
		mk("INC-e", "prod", 3*time.Hour, true),
	} {
		putIncident(t, s, i)
	}
	for _, c := range []struct {
		env  string
		open bool
		want []string
	}{
		{"prod", false, []string{"INC-e", "INC-c", "INC-b", "INC-a"}},
		{"prod", true, []string{"INC-e", "INC-b"}},
		{"", false, []string{"INC-e", "INC-c", "INC-d", "INC-b", "INC-a"}},
		{"", true, []string{"INC-e", "INC-d", "INC-b"}},
		{"staging", false, []string{"INC-d"}},
		{"dev", false, nil},
	} {
		if got := listIncidents(t, s, c.env, c.open); !slices.Equal(got, c.want) {
			t.Errorf("Incidents(%q, open %v) = %v, want %v (newest first)", c.env, c.open, got, c.want)
		}
	}
	// Closing one takes it out of the open list in the same transaction.
	update(t, s, func(tx rekey.Tx) error {
		i, err := tx.Incident("INC-e")
		if err != nil {
			return err
		}
		i.State, i.ClosedAt = rekey.IncidentClosed, t0.Add(4*time.Hour)
		if err := tx.PutIncident(i); err != nil {
			return err
		}
		open, err := tx.Incidents("prod", true)
		if err != nil {
			return err
		}
		if len(open) != 1 || open[0].ID != "INC-b" {
			t.Errorf("open incidents in the transaction that closed INC-e: %d, want INC-b only", len(open))
		}
		return nil
	})
}

func enqueue(t *testing.T, s rekey.Store, o rekey.OutboxItem) rekey.OutboxItem {
	t.Helper()
	return inTx(t, s, update, "Enqueue("+o.IdempotencyKey+")", func(tx rekey.Tx) (rekey.OutboxItem, error) { return tx.Enqueue(o) })
}

func outbox(t *testing.T, s rekey.Store, f rekey.OutboxFilter) []rekey.OutboxItem {
	t.Helper()
	return inTx(t, s, view, fmt.Sprintf("Outbox(%+v)", f), func(tx rekey.Tx) ([]rekey.OutboxItem, error) { return tx.Outbox(f) })
}

func outboxKeys(items []rekey.OutboxItem) []string {
	out := make([]string, 0, len(items))
	for _, o := range items {
		out = append(out, o.IdempotencyKey)
	}
	return out
}

func item(key string, next time.Time) rekey.OutboxItem {
	return rekey.OutboxItem{Created: t0, Env: "prod", Channel: "security", Event: rekey.EventIncidentOpened,
		IdempotencyKey: key, Body: []byte(`{"event":"incident.opened","secrets":["JWT_SECRET"]}`), NextAttempt: next}
}

func testOutboxEnqueue(t *testing.T, s rekey.Store) {
	in := item("INC-1/security/opened", t0.Add(time.Second))
	in.Attempts, in.LastError = 2, "earlier: connection refused"
	checkAllSet(t, "OutboxItem", reflect.ValueOf(withDelivered(in)))
	got := enqueue(t, s, in)
	if got.ID <= 0 {
		t.Fatalf("Enqueue assigned ID %d, want > 0", got.ID)
	}
	want := in
	want.ID = got.ID
	if d := cmp.Diff(want, got, rotationOpts); d != "" {
		t.Errorf("Enqueue returned (-given +returned):\n%s", d)
	}
	if d := cmp.Diff([]rekey.OutboxItem{want}, outbox(t, s, rekey.OutboxFilter{}), rotationOpts); d != "" {
		t.Errorf("Outbox after Enqueue (-given +read):\n%s", d)
	}
	// The same key again, in another transaction: nothing added, the first
	// item returned as it is.
	again := item(in.IdempotencyKey, t0.Add(time.Hour))
	again.Channel, again.Body = "oncall", []byte(`{"other":true}`)
	if d := cmp.Diff(want, enqueue(t, s, again), rotationOpts); d != "" {
		t.Errorf("Enqueue of a known key (-first +returned):\n%s", d)
	}
	// And twice in one transaction.
	update(t, s, func(tx rekey.Tx) error {
		a, err := tx.Enqueue(item("k2", time.Time{}))
		if err != nil {
			return err
		}
		b, err := tx.Enqueue(item("k2", t0))
		if err != nil {
			return err
		}
		if a.ID != b.ID || a.ID <= got.ID {
			t.Errorf("Enqueue twice in one transaction: IDs %d and %d, want one ID above %d", a.ID, b.ID, got.ID)
		}
		if !a.NextAttempt.Equal(a.Created) {
			t.Errorf("a zero NextAttempt became %v, want Created (%v)", a.NextAttempt, a.Created)
		}
		return nil
	})
	if keys := outboxKeys(outbox(t, s, rekey.OutboxFilter{})); !slices.Equal(keys, []string{in.IdempotencyKey, "k2"}) {
		t.Errorf("Outbox holds %v, want each key once", keys)
	}
	// Defaults: a zero Created is now.
	d := enqueue(t, s, rekey.OutboxItem{Channel: "c", IdempotencyKey: "k3"})
	if d.Created.IsZero() || !d.NextAttempt.Equal(d.Created) || !d.Pending() {
		t.Errorf("defaults: created %v, next %v, pending %v; want now, created, true", d.Created, d.NextAttempt, d.Pending())
	}
	for _, bad := range []rekey.OutboxItem{{Channel: "c"}, {IdempotencyKey: "k4"}} {
		if err := s.Update(ctx(t), func(tx rekey.Tx) error { _, err := tx.Enqueue(bad); return err }); err == nil {
			t.Errorf("Enqueue(channel %q, key %q) succeeded, want an error", bad.Channel, bad.IdempotencyKey)
		}
	}
	// An Update that fails keeps no item: the notification goes with its event.
	err := s.Update(ctx(t), func(tx rekey.Tx) error {
		if _, err := tx.Enqueue(item("k5", t0)); err != nil {
			return err
		}
		return errAbort
	})
	if !errors.Is(err, errAbort) {
		t.Fatalf("failing Update: %v", err)
	}
	if n := len(outbox(t, s, rekey.OutboxFilter{})); n != 3 {
		t.Errorf("Outbox after a failed Update holds %d items, want 3", n)
	}
}

// withDelivered is o delivered (for checkAllSet; ID is assigned).
func withDelivered(o rekey.OutboxItem) rekey.OutboxItem {
	o.ID, o.Delivered = 1, t0
	return o
}

func testOutboxFilters(t *testing.T, s rekey.Store) {
	// Enqueued in this order; NextAttempt not in it.
	for _, o := range []rekey.OutboxItem{item("a", t0.Add(3*time.Minute)), item("b", t0), item("c", t0.Add(time.Minute)), item("d", t0.Add(2*time.Minute))} {
		enqueue(t, s, o)
	}
	all := outbox(t, s, rekey.OutboxFilter{})
	for i := 1; i < len(all); i++ {
		if all[i].ID <= all[i-1].ID {
			t.Errorf("Outbox IDs %d then %d: want ascending, oldest first", all[i-1].ID, all[i].ID)
		}
	}
	ids := map[string]int64{}
	for _, o := range all {
		ids[o.IdempotencyKey] = o.ID
	}
	update(t, s, func(tx rekey.Tx) error { return tx.MarkAttempt(ids["c"], t0.Add(time.Minute), "", time.Time{}) })
	for _, c := range []struct {
		f    rekey.OutboxFilter
		want []string
	}{
		{rekey.OutboxFilter{}, []string{"a", "b", "c", "d"}},
		{rekey.OutboxFilter{Pending: true}, []string{"a", "b", "d"}},
		{rekey.OutboxFilter{DueBy: t0.Add(time.Minute)}, []string{"b", "c"}},
		{rekey.OutboxFilter{Pending: true, DueBy: t0.Add(2 * time.Minute)}, []string{"b", "d"}},
		{rekey.OutboxFilter{Pending: true, DueBy: t0.Add(-time.Second)}, nil},
		{rekey.OutboxFilter{Pending: true, Limit: 2}, []string{"a", "b"}},
		{rekey.OutboxFilter{Limit: 1}, []string{"a"}},
	} {
		if got := outboxKeys(outbox(t, s, c.f)); !slices.Equal(got, c.want) {
			t.Errorf("Outbox(pending %v, due by %v, limit %d) = %v, want %v", c.f.Pending, c.f.DueBy.Sub(t0), c.f.Limit, got, c.want)
		}
	}
}

func testOutboxMarkAttempt(t *testing.T, s rekey.Store) {
	o := enqueue(t, s, item("k", t0))
	next := t0.Add(30 * time.Second)
	long := strings.Repeat("é", rekey.MaxLastError) // 2 bytes each: cut inside one
	update(t, s, func(tx rekey.Tx) error { return tx.MarkAttempt(o.ID, time.Time{}, long, next) })
	got := outbox(t, s, rekey.OutboxFilter{})[0]
	if got.Attempts != 1 || !got.Pending() || !got.NextAttempt.Equal(next) {
		t.Errorf("after a failed attempt: attempts %d, pending %v, next %v; want 1, true, %v", got.Attempts, got.Pending(), got.NextAttempt, next)
	}
	if len(got.LastError) > rekey.MaxLastError || !strings.HasPrefix(long, got.LastError) || len(got.LastError) < rekey.MaxLastError-1 {
		t.Errorf("LastError kept %d bytes, want the first %d of a longer text, whole characters", len(got.LastError), rekey.MaxLastError)
	}
	if n := len(outbox(t, s, rekey.OutboxFilter{Pending: true, DueBy: t0})); n != 0 {
		t.Errorf("an item retried later is due at t0: %d items, want 0", n)
	}
	done := t0.Add(31 * time.Second)
	update(t, s, func(tx rekey.Tx) error { return tx.MarkAttempt(o.ID, done, "", next) })
	got = outbox(t, s, rekey.OutboxFilter{})[0]
	if got.Attempts != 2 || !got.Delivered.Equal(done) || got.LastError != "" {
		t.Errorf("after delivery: attempts %d, delivered %v, last error %d bytes; want 2, %v, none", got.Attempts, got.Delivered, len(got.LastError), done)
	}
	if n := len(outbox(t, s, rekey.OutboxFilter{Pending: true})); n != 0 {
		t.Errorf("pending after delivery: %d, want 0", n)
	}
	// The rest of the item is unchanged.
	got.Attempts, got.Delivered, got.NextAttempt, got.LastError = o.Attempts, o.Delivered, o.NextAttempt, o.LastError
	if d := cmp.Diff(o, got, rotationOpts); d != "" {
		t.Errorf("MarkAttempt changed more than the attempt's fields (-enqueued +read):\n%s", d)
	}
	err := s.Update(ctx(t), func(tx rekey.Tx) error { return tx.MarkAttempt(o.ID+100, done, "", next) })
	wantNotFound(t, "MarkAttempt of an unknown item", err)
}

// testIncidentWritesInView: a View refuses every new write.
func testIncidentWritesInView(t *testing.T, s rekey.Store) {
	o := enqueue(t, s, item("k", t0))
	for name, fn := range map[string]func(rekey.Tx) error{
		"PutIncident": func(tx rekey.Tx) error { return tx.PutIncident(fullIncident("INC-v", "prod", t0)) },
		"Enqueue":     func(tx rekey.Tx) error { _, err := tx.Enqueue(item("k2", t0)); return err },
		"MarkAttempt": func(tx rekey.Tx) error { return tx.MarkAttempt(o.ID, t0, "", t0) },
	} {
		if err := s.View(ctx(t), fn); err == nil {
			t.Errorf("%s in a View succeeded, want an error", name)
		}
	}
	if ids := listIncidents(t, s, "", false); len(ids) != 0 {
		t.Errorf("incidents after the refused writes: %v, want none", ids)
	}
	if got := outbox(t, s, rekey.OutboxFilter{}); len(got) != 1 || got[0].Attempts != 0 {
		t.Errorf("outbox after the refused writes: %d items, want the one enqueued, untouched", len(got))
	}
}
