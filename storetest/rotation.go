package storetest

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rekeyhq/rekey"
)

func rotation(id, env string, state rekey.RotationState, started time.Time) *rekey.Rotation {
	return &rekey.Rotation{ID: id, Env: env, Mode: rekey.ModeScheduled, State: state, Actor: "alice@host", Started: started}
}

func getRotation(t *testing.T, s rekey.Store, id string) *rekey.Rotation {
	t.Helper()
	return inTx(t, s, view, fmt.Sprintf("Rotation(%s)", id), func(tx rekey.Tx) (*rekey.Rotation, error) {
		return tx.Rotation(id)
	})
}

func putRotation(t *testing.T, s rekey.Store, r *rekey.Rotation) {
	t.Helper()
	update(t, s, func(tx rekey.Tx) error { return tx.PutRotation(r) })
}

// pruneRotations runs PruneRotations in its own Update and returns how
// many rotations it deleted.
func pruneRotations(t *testing.T, s rekey.Store, env string, keep int) int {
	t.Helper()
	return inTx(t, s, update, fmt.Sprintf("PruneRotations(%s, %d)", env, keep), func(tx rekey.Tx) (int, error) {
		return tx.PruneRotations(env, keep)
	})
}

func testRotationPutAndReplace(t *testing.T, s rekey.Store) {
	paris := time.FixedZone("CET", 3600)
	r := &rekey.Rotation{
		ID:      "20250314T092653Z-abcd",
		Env:     "prod",
		Mode:    rekey.ModeEmergency,
		State:   rekey.StateRunning,
		Actor:   "alice@laptop",
		Secrets: map[string]int{"DB_PASSWORD": 4, "API_KEY": 2},
		Steps:   []rekey.Step{{Name: "create", Started: t0, Ended: t0.Add(time.Millisecond), Outcome: "ok"}},
		Started: t0.In(paris),
	}
	putRotation(t, s, r)
	got := getRotation(t, s, r.ID)
	if d := cmp.Diff(r, got, rotationOpts); d != "" {
		t.Errorf("Rotation after insert (-put +read):\n%s", d)
	}
	if !got.Ended.IsZero() {
		t.Errorf("Ended of a running rotation is %s, want zero", got.Ended)
	}

	// The journal grows step by step; each PutRotation replaces the record.
	steps := []rekey.Step{
		{Name: "apply", Started: t0.Add(time.Second), Ended: t0.Add(2 * time.Second), Outcome: "ok", Detail: "2 targets"},
		{Name: "verify", Started: t0.Add(3 * time.Second), Ended: t0.Add(4*time.Second + 7), Outcome: "error", Detail: "target x: HTTP 500"},
		{Name: "publish", Started: t0.Add(5 * time.Second)}, // started, not ended
	}
	for i, st := range steps {
		r.Steps = append(r.Steps, st)
		putRotation(t, s, r)
		got := getRotation(t, s, r.ID)
		if len(got.Steps) != i+2 {
			t.Fatalf("after step %q the journal has %d steps, want %d", st.Name, len(got.Steps), i+2)
		}
		if d := cmp.Diff(r, got, rotationOpts); d != "" {
			t.Errorf("Rotation after step %q (-put +read):\n%s", st.Name, d)
		}
		if got.LastStep().Name != st.Name {
			t.Errorf("LastStep is %q, want %q", got.LastStep().Name, st.Name)
		}
	}
	// Finish it; PutRotation replaces every field, not only the ones a journal changes.
	r.State, r.Ended, r.Error = rekey.StateFailed, t0.Add(time.Minute+1), "verification failed: target x"
	r.Mode, r.Actor, r.Started = rekey.ModeManual, "bob@host", t0.Add(-time.Second)
	r.Secrets = map[string]int{"DB_PASSWORD": 4}
	putRotation(t, s, r)
	if d := cmp.Diff(r, getRotation(t, s, r.ID), rotationOpts); d != "" {
		t.Errorf("Rotation after it ended (-put +read):\n%s", d)
	}
	view(t, s, func(tx rekey.Tx) error {
		all, err := tx.Rotations("", false)
		if err != nil {
			return err
		}
		if len(all) != 1 {
			t.Errorf("replacing a rotation made %d records, want 1", len(all))
		}
		running, err := tx.Rotations("prod", true)
		if err != nil {
			return err
		}
		if len(running) != 0 {
			t.Errorf("a failed rotation is listed as unfinished")
		}
		return nil
	})

	// The rotation is a copy: changing the caller's struct afterwards changes nothing.
	r.Steps[0].Detail = "changed after PutRotation"
	r.Secrets["OTHER"] = 1
	if got := getRotation(t, s, r.ID); got.Steps[0].Detail != "" || len(got.Secrets) != 1 {
		t.Errorf("the stored rotation follows the caller's struct")
	}
}

func testRotations(t *testing.T, s rekey.Store) {
	put := []*rekey.Rotation{
		rotation("r1", "prod", rekey.StateRunning, t0),
		rotation("r2", "prod", rekey.StateDone, t0.Add(1*time.Minute)),
		rotation("r3", "staging", rekey.StateRunning, t0.Add(2*time.Minute)),
		rotation("r4", "prod", rekey.StateRunning, t0.Add(3*time.Minute)),
		rotation("r5", "prod", rekey.StateRolledBack, t0.Add(4*time.Minute)),
		rotation("r6", "staging", rekey.StateFailed, t0.Add(5*time.Minute)),
	}
	// Insert out of order: the listing orders by start, not by insertion.
	update(t, s, func(tx rekey.Tx) error {
		for _, i := range []int{3, 0, 5, 1, 4, 2} {
			if err := tx.PutRotation(put[i]); err != nil {
				return err
			}
		}
		return nil
	})
	list := func(env string, unfinished bool) []string {
		t.Helper()
		var ids []string
		view(t, s, func(tx rekey.Tx) error {
			rs, err := tx.Rotations(env, unfinished)
			if err != nil {
				return fmt.Errorf("Rotations(%q, %v): %w", env, unfinished, err)
			}
			for _, r := range rs {
				ids = append(ids, r.ID)
				if env != "" && r.Env != env {
					t.Errorf("Rotations(%q) lists %s of %s", env, r.ID, r.Env)
				}
				if unfinished && r.State != rekey.StateRunning {
					t.Errorf("Rotations(%q, true) lists %s in state %s", env, r.ID, r.State)
				}
			}
			return nil
		})
		return ids
	}
	for _, c := range []struct {
		env        string
		unfinished bool
		want       []string
	}{
		{"prod", false, []string{"r5", "r4", "r2", "r1"}},
		{"prod", true, []string{"r4", "r1"}},
		{"staging", false, []string{"r6", "r3"}},
		{"staging", true, []string{"r3"}},
		{"", false, []string{"r6", "r5", "r4", "r3", "r2", "r1"}},
		{"", true, []string{"r4", "r3", "r1"}},
		{"dev", false, nil},
		{"dev", true, nil},
	} {
		if got := list(c.env, c.unfinished); !slices.Equal(got, c.want) {
			t.Errorf("Rotations(%q, %v) = %q, want %q (newest first)", c.env, c.unfinished, got, c.want)
		}
	}
	// Rotations returns whole records.
	view(t, s, func(tx rekey.Tx) error {
		rs, err := tx.Rotations("staging", false)
		if err != nil {
			return err
		}
		for _, r := range rs {
			want := put[map[string]int{"r3": 2, "r6": 5}[r.ID]]
			if d := cmp.Diff(want, r, rotationOpts); d != "" {
				t.Errorf("Rotations record %s (-put +listed):\n%s", r.ID, d)
			}
		}
		return nil
	})
	// Finishing a rotation takes it off the unfinished list.
	r4 := *put[3]
	r4.State, r4.Ended = rekey.StateDone, t0.Add(10*time.Minute)
	putRotation(t, s, &r4)
	if got := list("prod", true); !slices.Equal(got, []string{"r1"}) {
		t.Errorf("Rotations(prod, true) after r4 finished = %q, want [r1]", got)
	}
	if got := list("", false); len(got) != 6 {
		t.Errorf("Rotations(\"\", false) lists %d after a replace, want 6", len(got))
	}
}

func testPruneRotations(t *testing.T, s rekey.Store) {
	var ids []string
	update(t, s, func(tx rekey.Tx) error {
		for i := 0; i < 8; i++ {
			state := rekey.StateDone
			switch i {
			case 1, 6:
				state = rekey.StateRunning
			case 3:
				state = rekey.StateRolledBack
			case 4:
				state = rekey.StateFailed
			}
			id := fmt.Sprintf("p%d", i)
			ids = append(ids, id)
			if err := tx.PutRotation(rotation(id, "prod", state, t0.Add(time.Duration(i)*time.Minute))); err != nil {
				return err
			}
		}
		return tx.PutRotation(rotation("other", "staging", rekey.StateDone, t0))
	})
	if n := pruneRotations(t, s, "prod", 2); n != 4 {
		t.Errorf("PruneRotations(prod, 2) deleted %d, want 4", n)
	}
	var got []string
	view(t, s, func(tx rekey.Tx) error {
		rs, err := tx.Rotations("", false)
		for _, r := range rs {
			got = append(got, r.ID)
		}
		return err
	})
	// Kept: the two running ones (p6, p1), the two newest finished (p7, p5), the other environment.
	if want := []string{"p7", "p6", "p5", "p1", "other"}; !slices.Equal(got, want) {
		t.Errorf("after PruneRotations(prod, 2): %q, want %q", got, want)
	}
	if n := pruneRotations(t, s, "prod", 0); n != 2 {
		t.Errorf("PruneRotations(prod, 0) deleted %d, want 2 (running ones stay)", n)
	}
}

// appendAudit appends entries in one Update and returns them as Audit did.
func appendAudit(t *testing.T, s rekey.Store, es ...rekey.AuditEntry) []rekey.AuditEntry {
	t.Helper()
	var out []rekey.AuditEntry
	update(t, s, func(tx rekey.Tx) error {
		for _, e := range es {
			got, err := tx.Audit(e)
			if err != nil {
				return fmt.Errorf("Audit(%s): %w", e.Action, err)
			}
			out = append(out, got)
		}
		return nil
	})
	return out
}

// checkChain checks Seq 1, 2, 3 ... and that each PrevHash is the previous Hash.
func checkChain(t *testing.T, es []rekey.AuditEntry) {
	t.Helper()
	hashes := map[string]int64{}
	for i, e := range es {
		if e.Seq != int64(i+1) {
			t.Errorf("entry #%d has Seq %d, want %d", i+1, e.Seq, i+1)
		}
		if e.Hash == "" {
			t.Errorf("entry %d has no hash", e.Seq)
		}
		if prev, ok := hashes[e.Hash]; ok {
			t.Errorf("entries %d and %d have the same hash", prev, e.Seq)
		}
		hashes[e.Hash] = e.Seq
		if i > 0 && e.PrevHash != es[i-1].Hash {
			t.Errorf("entry %d PrevHash %q is not the hash of entry %d (%q)", e.Seq, e.PrevHash, es[i-1].Seq, es[i-1].Hash)
		}
	}
}

func testAuditChain(t *testing.T, s rekey.Store) {
	in := []rekey.AuditEntry{
		{Time: t0, Actor: "alice", Action: "init", Env: "prod", Outcome: "ok", Detail: "3 secrets imported"},
		{Time: t0.Add(time.Second + 1), Actor: "alice", Action: "rotate.create", Env: "prod", Secret: "DB_PASSWORD", Version: 2, Fingerprint: "fp:0123456789abcdef", Outcome: "ok"},
	}
	got := appendAudit(t, s, in...)
	more := []rekey.AuditEntry{
		{Time: t0.Add(2 * time.Second).In(time.FixedZone("X", -7*3600)), Actor: "cron", Action: "rotate.verify", Env: "prod", Secret: "DB_PASSWORD", Version: 2, Outcome: "error", Detail: "ünïcode détail"},
		{Time: t0.Add(3 * time.Second), Actor: "cron", Action: "rotate.rollback", Env: "prod", Secret: "DB_PASSWORD", Version: 1, Outcome: "ok"},
		{Actor: "bob", Action: "get", Env: "staging", Secret: "API_KEY", Version: 1, Outcome: "ok"}, // zero time: now
	}
	before := time.Now()
	got = append(got, appendAudit(t, s, more...)...)
	after := time.Now()
	in = append(in, more...)
	checkChain(t, got)
	for i, e := range got {
		want := in[i]
		want.Seq, want.PrevHash, want.Hash = e.Seq, e.PrevHash, e.Hash
		if want.Time.IsZero() {
			const slack = time.Minute
			if e.Time.Before(before.Add(-slack)) || e.Time.After(after.Add(slack)) {
				t.Errorf("entry %d with a zero Time got %s, want about now", e.Seq, e.Time.Format(time.RFC3339Nano))
			}
			want.Time = e.Time
		}
		if d := cmp.Diff(want, e); d != "" {
			t.Errorf("Audit returned for entry %d (-given +returned):\n%s", e.Seq, d)
		}
	}
	log := auditLog(t, s, rekey.AuditFilter{})
	if d := cmp.Diff(got, log); d != "" {
		t.Errorf("AuditLog differs from what Audit returned (-returned +log):\n%s", d)
	}
	for _, e := range log {
		if e.Time.Location() != time.UTC {
			t.Errorf("entry %d Time is in %v, want UTC", e.Seq, e.Time.Location())
		}
	}
	if !log[2].Time.Equal(in[2].Time) || log[1].Time.Nanosecond() != in[1].Time.Nanosecond() {
		t.Errorf("audit times are not kept to the nanosecond")
	}
	verifyAudit(t, s, 5)
	// Appending after verification goes on with the chain.
	got = append(got, appendAudit(t, s, rekey.AuditEntry{Actor: "bob", Action: "status", Outcome: "ok"})...)
	checkChain(t, got)
	verifyAudit(t, s, 6)
}

func testAuditFilters(t *testing.T, s rekey.Store) {
	type spec struct{ env, secret string }
	specs := []spec{
		{"prod", ""},            // 1
		{"prod", "A"},           // 2
		{"staging", "A"},        // 3
		{"prod", "B"},           // 4
		{"", ""},                // 5
		{"prod", "A"},           // 6
		{"staging", "B"},        // 7
		{"prod", "A"},           // 8
		{"staging", "A"},        // 9
		{"prod", "AB"},          // 10: a prefix of no filter
		{"production", "A"},     // 11
		{"prod", "DB_PASSWORD"}, // 12
	}
	var es []rekey.AuditEntry
	for i, sp := range specs {
		es = append(es, rekey.AuditEntry{Time: t0.Add(time.Duration(i) * time.Minute), Actor: "t", Action: "act", Env: sp.env, Secret: sp.secret, Outcome: "ok"})
	}
	appendAudit(t, s, es[:6]...)
	appendAudit(t, s, es[6:]...)
	for _, c := range []struct {
		name string
		f    rekey.AuditFilter
		want []int64
	}{
		{"none", rekey.AuditFilter{}, []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}},
		{"env", rekey.AuditFilter{Env: "prod"}, []int64{1, 2, 4, 6, 8, 10, 12}},
		{"env staging", rekey.AuditFilter{Env: "staging"}, []int64{3, 7, 9}},
		{"secret", rekey.AuditFilter{Secret: "A"}, []int64{2, 3, 6, 8, 9, 11}},
		{"env and secret", rekey.AuditFilter{Env: "prod", Secret: "A"}, []int64{2, 6, 8}},
		{"missing env", rekey.AuditFilter{Env: "dev"}, nil},
		{"since exact", rekey.AuditFilter{Since: t0.Add(9 * time.Minute)}, []int64{10, 11, 12}},
		{"since between", rekey.AuditFilter{Since: t0.Add(8*time.Minute + time.Nanosecond)}, []int64{10, 11, 12}},
		{"since in another zone", rekey.AuditFilter{Since: t0.Add(9 * time.Minute).In(time.FixedZone("Y", 5*3600))}, []int64{10, 11, 12}},
		{"since before all", rekey.AuditFilter{Since: t0.Add(-time.Hour)}, []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}},
		{"since after all", rekey.AuditFilter{Since: t0.Add(time.Hour)}, nil},
		{"limit", rekey.AuditFilter{Limit: 3}, []int64{10, 11, 12}},
		{"limit 1", rekey.AuditFilter{Limit: 1}, []int64{12}},
		{"limit above count", rekey.AuditFilter{Limit: 100}, []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}},
		{"env and limit", rekey.AuditFilter{Env: "prod", Limit: 2}, []int64{10, 12}},
		{"secret and limit", rekey.AuditFilter{Secret: "A", Limit: 4}, []int64{6, 8, 9, 11}},
		{"all filters", rekey.AuditFilter{Env: "prod", Secret: "A", Since: t0.Add(2 * time.Minute), Limit: 1}, []int64{8}},
		{"since and limit", rekey.AuditFilter{Since: t0.Add(3 * time.Minute), Limit: 20}, []int64{4, 5, 6, 7, 8, 9, 10, 11, 12}},
	} {
		got := auditLog(t, s, c.f)
		if !slices.Equal(seqs(got), c.want) {
			t.Errorf("AuditLog %s (%+v) = %v, want %v", c.name, c.f, seqs(got), c.want)
		}
		for _, e := range got {
			want := es[e.Seq-1]
			if e.Env != want.Env || e.Secret != want.Secret || !e.Time.Equal(want.Time) {
				t.Errorf("AuditLog %s: entry %d is %s/%s at %s, want %s/%s at %s", c.name, e.Seq, e.Env, e.Secret, e.Time, want.Env, want.Secret, want.Time)
			}
		}
	}
	verifyAudit(t, s, len(specs))
}

func testAuditFailedUpdate(t *testing.T, s rekey.Store) {
	got := appendAudit(t, s,
		rekey.AuditEntry{Time: t0, Actor: "t", Action: "one", Outcome: "ok"},
		rekey.AuditEntry{Time: t0.Add(time.Second), Actor: "t", Action: "two", Outcome: "ok"},
	)
	for attempt := range 2 {
		err := s.Update(ctx(t), func(tx rekey.Tx) error {
			for i := range 3 {
				e, err := tx.Audit(rekey.AuditEntry{Time: t0.Add(time.Minute), Actor: "t", Action: fmt.Sprintf("lost-%d-%d", attempt, i), Outcome: "ok"})
				if err != nil {
					return err
				}
				if e.Seq != int64(3+i) {
					t.Errorf("Audit in an Update returned Seq %d, want %d", e.Seq, 3+i)
				}
			}
			return errAbort
		})
		if !errors.Is(err, errAbort) {
			t.Fatalf("Update returned %v, want the error fn returned", err)
		}
		verifyAudit(t, s, 2)
	}
	if log := auditLog(t, s, rekey.AuditFilter{}); !slices.Equal(seqs(log), []int64{1, 2}) {
		t.Errorf("audit log after failed Updates lists %v, want [1 2]", seqs(log))
	}
	got = append(got, appendAudit(t, s, rekey.AuditEntry{Time: t0.Add(time.Hour), Actor: "t", Action: "three", Outcome: "ok"})...)
	checkChain(t, got)
	if log := auditLog(t, s, rekey.AuditFilter{}); !slices.Equal(seqs(log), []int64{1, 2, 3}) || log[2].Action != "three" {
		t.Errorf("audit log lists %v, want [1 2 3] ending with the entry of the successful Update", seqs(log))
	}
	verifyAudit(t, s, 3)
}

func testAuditEmpty(t *testing.T, s rekey.Store) {
	verifyAudit(t, s, 0)
	if log := auditLog(t, s, rekey.AuditFilter{Limit: 5}); len(log) != 0 {
		t.Errorf("AuditLog of an empty store lists %v", seqs(log))
	}
	got := appendAudit(t, s, rekey.AuditEntry{Actor: "t", Action: "first", Outcome: "ok"})
	if got[0].Seq != 1 || got[0].Hash == "" {
		t.Errorf("first audit entry has Seq %d and hash %q, want Seq 1 and a hash", got[0].Seq, got[0].Hash)
	}
	verifyAudit(t, s, 1)
}
