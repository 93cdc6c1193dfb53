package rekey

import (
	"testing"
	"time"
)

// TestRollbackKeepsValueAge: a version a rollback created counts its age,
// last rotation and due date from the version that first held the value,
// through a rollback of a rollback too.
func TestRollbackKeepsValueAge(t *testing.T) {
	day := func(n int) time.Time { return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, n) }
	v1 := Version{N: 1, CreatedAt: day(0), Source: SourceImported}
	v2 := Version{N: 2, CreatedAt: day(100), Source: SourceGenerated}
	v3 := Version{N: 3, CreatedAt: day(150), Source: SourceRollback, Attrs: RollbackAttrs(v1)}
	if got := v3.ValueSince(); !got.Equal(day(0)) || v3.ValueOf() != 1 {
		t.Fatalf("v3: since %v, of v%d; want %v, v1", got, v3.ValueOf(), day(0))
	}
	// v4 rolls back to v2; v5 to v3, whose value is v1's.
	v5 := Version{N: 5, CreatedAt: day(160), Source: SourceRollback, Attrs: RollbackAttrs(v3)}
	if got := v5.ValueSince(); !got.Equal(day(0)) || v5.ValueOf() != 1 {
		t.Fatalf("v5: since %v, of v%d", got, v5.ValueOf())
	}
	if v2.ValueSince() != v2.CreatedAt || v2.ValueOf() != 2 {
		t.Fatal("a generated version is its own age")
	}
	// An attribute that would make a value younger than its version, or
	// name a later version, is ignored.
	odd := Version{N: 2, CreatedAt: day(10), Attrs: map[string]string{AttrValueSince: day(20).Format(time.RFC3339Nano), AttrValueOf: "7"}}
	if !odd.ValueSince().Equal(day(10)) || odd.ValueOf() != 2 {
		t.Fatal("odd attributes were believed")
	}

	specs := []Spec{{Name: "JWT_SECRET", Kind: KindGenerated, Period: 180 * Day}}
	rows := ComputeStatus("production", specs, map[string]Version{"JWT_SECRET": v3}, map[string]int{"JWT_SECRET": 512}, day(170))
	r := rows[0]
	if !r.LastRotated.Equal(day(0)) || !r.NextDue.Equal(day(180)) || r.ValueOf != 1 || !r.RolledBackAt.Equal(day(150)) || r.State != StateDueSoon {
		t.Errorf("status after the rollback: %+v", r)
	}
	rows = ComputeStatus("production", specs, map[string]Version{"JWT_SECRET": v3}, map[string]int{"JWT_SECRET": 512}, day(181))
	if rows[0].State != StateOverdue {
		t.Errorf("state %s on day 181, want overdue", rows[0].State)
	}
}
