package sqlite_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/sqlite"
	"github.com/rekeyhq/rekey/internal/testkit"
	"github.com/rekeyhq/rekey/seal"
)

// TestUpgradeFormat2 opens a store written by the format 2 code (testdata,
// made before this change) and finds every value, label, attribute,
// rotation and audit entry as it was, now authenticated.
func TestUpgradeFormat2(t *testing.T) {
	key, err := seal.ParseKey(strings.TrimSpace(testkit.ReadFile(t, "testdata/format2.key")))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "rekey.db")
	testkit.CopyFile(t, "testdata/format2.db", path)
	s, err := sqlite.Open(t.Context(), path, key)
	if err != nil {
		t.Fatalf("Open of a format 2 store: %v", err)
	}
	defer s.Close()
	type row struct {
		N     int
		Label rekey.Label
		Attrs map[string]string
		Value string
	}
	got := map[string][]row{}
	var rots []*rekey.Rotation
	err = s.View(t.Context(), func(tx rekey.Tx) error {
		err := rekey.EachVersion(tx, func(v rekey.Version) error {
			val, err := tx.Value(v.Env, v.Name, v.N)
			if err == nil {
				got[v.Env+"/"+v.Name] = append(got[v.Env+"/"+v.Name], row{v.N, v.Label, v.Attrs, string(val.Reveal())})
			}
			return err
		})
		if err != nil {
			return err
		}
		rots, err = tx.Rotations("production", false)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]row{
		"production/JWT_SECRET": {
			{1, "", nil, "jwt-one-aaaaaaaaaaaaaaaaaaaaaaaa"},
			{2, rekey.LabelPrevious, map[string]string{"grace_until": "2025-11-19T09:00:00Z"}, "jwt-two-bbbbbbbbbbbbbbbbbbbbbbbb"},
			{3, rekey.LabelCurrent, nil, "jwt-three-cccccccccccccccccccccc"},
		},
		"production/DATABASE_PASSWORD": {
			{1, "", map[string]string{"role": "app_blue"}, "pw-blue-1111111111111111"},
			{2, rekey.LabelCurrent, map[string]string{"role": "app_green"}, "pw-green-222222222222222"},
		},
		"staging/JWT_SECRET": {{1, rekey.LabelCurrent, nil, "staging-jwt-dddddddddddddddd"}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("after the upgrade (-want +got):\n%s", diff)
	}
	if len(rots) != 3 {
		t.Fatalf("%d rotations, want 3", len(rots))
	}
	n, err := s.VerifyAudit(t.Context())
	if err != nil || n != 7 {
		t.Fatalf("VerifyAudit = %d, %v; want the 6 old entries and the upgrade's", n, err)
	}
	var log []rekey.AuditEntry
	s.View(t.Context(), func(tx rekey.Tx) error { log, err = tx.AuditLog(rekey.AuditFilter{}); return err })
	if last := log[len(log)-1]; last.Action != "store.upgrade" || !strings.Contains(last.Detail, "taken as found") {
		t.Fatalf("last audit entry %+v, want the upgrade", last)
	}
	if err := s.Authenticate(t.Context(), true); err != nil {
		t.Fatal(err)
	}
	if missing, err := s.Unaudited(t.Context()); err != nil || len(missing) != 0 {
		t.Fatalf("Unaudited = %v, %v", missing, err)
	}
	// Upgraded once: a second Open finds format 3 and changes nothing.
	s.Close()
	s2, err := sqlite.Open(t.Context(), path, key)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if n2, err := s2.VerifyAudit(t.Context()); err != nil || n2 != n {
		t.Fatalf("second open: VerifyAudit = %d, %v; want %d", n2, err, n)
	}
}

// TestUnaudited: a version or rotation written without its audit entry is
// listed; with one it is not.
func TestUnaudited(t *testing.T) {
	s := create(t, storePath(t), newKey(t))
	err := s.Update(t.Context(), func(tx rekey.Tx) error {
		v, err := tx.AddVersion("prod", "A", rekey.NewVersion{Value: rekey.NewValueString("a1"), Label: rekey.LabelCurrent})
		if err != nil {
			return err
		}
		if _, err := tx.Audit(rekey.AuditEntry{Actor: "t", Action: "import", Env: "prod", Secret: "A", Version: v.N, Fingerprint: v.Fingerprint, Outcome: "ok"}); err != nil {
			return err
		}
		if _, err := tx.AddVersion("prod", "B", rekey.NewVersion{Value: rekey.NewValueString("b1"), Label: rekey.LabelCurrent}); err != nil {
			return err
		}
		return tx.PutRotation(&rekey.Rotation{ID: "r-unaudited", Env: "prod", Mode: rekey.ModeManual, State: rekey.StateDone, Actor: "t"})
	})
	if err != nil {
		t.Fatal(err)
	}
	missing, err := s.Unaudited(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(missing) != 2 || !strings.Contains(missing[0], "prod/B v1") || !strings.Contains(missing[1], "rotation r-unaudited") {
		t.Fatalf("Unaudited = %q, want B v1 and the rotation", missing)
	}
}

// TestAnchorRollback: the whole file replaced by an older copy of itself
// is refused when an anchor saw the newer one; a lagging anchor is fine.
func TestAnchorRollback(t *testing.T) {
	path, key, dir := storePath(t), newKey(t), t.TempDir()
	s, err := sqlite.Create(t.Context(), path, key, "", sqlite.WithAnchor(dir))
	if err != nil {
		t.Fatal(err)
	}
	fill(t, s, []fixture{{"prod", "A", 1, []byte("a1")}})
	audit(t, s, "first")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	old := filepath.Join(t.TempDir(), "old.db")
	testkit.CopyFile(t, path, old)
	s, err = sqlite.Open(t.Context(), path, key, sqlite.WithAnchor(dir))
	if err != nil {
		t.Fatal(err)
	}
	fill(t, s, []fixture{{"prod", "A", 2, []byte("a2")}})
	audit(t, s, "second") // rekey audits every change: the anchor orders states by the audit head
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	testkit.CopyFile(t, old, path)
	_, err = sqlite.Open(t.Context(), path, key, sqlite.WithAnchor(dir))
	if rekey.ErrorCode(err) != rekey.CodeAuth || !strings.Contains(err.Error(), "older than this machine last saw") {
		t.Fatalf("Open of a rolled-back store: %v", err)
	}
	// Without the anchor the old copy is consistent: that is the limit.
	s, err = sqlite.Open(t.Context(), path, key)
	if err != nil {
		t.Fatalf("Open without an anchor: %v", err)
	}
	s.Close()
	s, err = sqlite.Open(t.Context(), path, key, sqlite.WithAnchor(dir), sqlite.WithAnchorReset())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = sqlite.Open(t.Context(), path, key, sqlite.WithAnchor(dir))
	if err != nil {
		t.Fatalf("Open after the reset: %v", err)
	}
	s.Close()
}

func audit(t *testing.T, s rekey.Store, action string) {
	t.Helper()
	if err := s.Update(t.Context(), func(tx rekey.Tx) error {
		_, err := tx.Audit(rekey.AuditEntry{Actor: "t", Action: action, Outcome: "ok"})
		return err
	}); err != nil {
		t.Fatal(err)
	}
}
