package storetest

import (
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
