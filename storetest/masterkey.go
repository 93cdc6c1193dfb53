package storetest

import (
	"crypto/rand"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/seal"
)

func testRotateMasterKey(t *testing.T, s rekey.Store) {
	big := make([]byte, 10*1024)
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	type stored struct {
		env, name string
		n         int
		value     []byte
	}
	var all []stored
	update(t, s, func(tx rekey.Tx) error {
		for _, p := range []struct {
			env, name string
			value     []byte
			l         rekey.Label
		}{
			{"prod", "A", []byte("a1"), rekey.LabelPrevious},
			{"prod", "A", []byte("a2"), rekey.LabelCurrent},
			{"prod", "A", nil, rekey.LabelNone},
			{"prod", "BIG", big, rekey.LabelCurrent},
			{"staging", "A", []byte{0, 1, 2, 0xff}, rekey.LabelCurrent},
		} {
			v, err := tx.AddVersion(p.env, p.name, rekey.NewVersion{Value: rekey.NewValue(p.value), Label: p.l, Source: rekey.SourceGenerated})
			if err != nil {
				return err
			}
			all = append(all, stored{p.env, p.name, v.N, p.value})
			if _, err := tx.Audit(rekey.AuditEntry{Actor: "t", Action: "add", Env: p.env, Secret: p.name, Version: v.N, Fingerprint: v.Fingerprint, Outcome: "ok"}); err != nil {
				return err
			}
		}
		return nil
	})
	snapshot := func() map[string][]rekey.Version {
		out := map[string][]rekey.Version{}
		for _, st := range all {
			out[st.env+"/"+st.name] = versions(t, s, st.env, st.name)
		}
		return out
	}
	before := snapshot()
	fpA := s.Fingerprint(rekey.NewValueString("a1"))
	logBefore := auditLog(t, s, rekey.AuditFilter{})

	for round := 1; round <= 2; round++ {
		key, err := seal.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		if err := s.RotateMasterKey(ctx(t), key); err != nil {
			t.Fatalf("RotateMasterKey (round %d): %v", round, err)
		}
		view(t, s, func(tx rekey.Tx) error {
			for _, st := range all {
				got, err := tx.Value(st.env, st.name, st.n)
				if err != nil {
					return fmt.Errorf("Value(%s, %s, %d) after master key rotation: %w", st.env, st.name, st.n, err)
				}
				checkValue(t, s, fmt.Sprintf("%s/%s v%d after master key rotation %d", st.env, st.name, st.n, round), got, st.value)
			}
			return nil
		})
		if d := cmp.Diff(before, snapshot()); d != "" {
			t.Errorf("versions changed by master key rotation %d (-before +after):\n%s", round, d)
		}
		if got := s.Fingerprint(rekey.NewValueString("a1")); got != fpA {
			t.Errorf("Fingerprint changed by master key rotation %d: %s, was %s", round, got, fpA)
		}
		if d := cmp.Diff(logBefore, auditLog(t, s, rekey.AuditFilter{})); d != "" {
			t.Errorf("audit log changed by master key rotation %d (-before +after):\n%s", round, d)
		}
		verifyAudit(t, s, len(logBefore))
	}
	// The store works on under the new key.
	v := add(t, s, "prod", "A", rekey.NewVersion{Value: rekey.NewValueString("a4"), Label: rekey.LabelCurrent, Source: rekey.SourceManual})
	if v.N != 4 || v.Fingerprint != s.Fingerprint(rekey.NewValueString("a4")) {
		t.Errorf("AddVersion after master key rotation returned v%d with fingerprint %s", v.N, v.Fingerprint)
	}
	checkValue(t, s, "prod/A v4", readValue(t, s, "prod", "A", 4), []byte("a4"))
	appendAudit(t, s, rekey.AuditEntry{Actor: "t", Action: "after", Outcome: "ok"})
	verifyAudit(t, s, len(logBefore)+1)
}

// testSecretHygiene stores a distinctive value and checks that nothing the
// store returns besides Value holds it: versions, labels, rotations, audit
// entries, fingerprints and errors.
func testSecretHygiene(t *testing.T, s rekey.Store) {
	raw := make([]byte, 18)
	if _, err := rand.Read(raw); err != nil {
		t.Fatal(err)
	}
	secret := fmt.Sprintf("canary-%x", raw)
	contains := func(what, text string) {
		t.Helper()
		if strings.Contains(text, secret) || strings.Contains(text, secret[7:]) {
			t.Errorf("%s contains the stored value", what)
		}
	}
	var added rekey.Version
	update(t, s, func(tx rekey.Tx) error {
		var err error
		added, err = tx.AddVersion("prod", "CANARY", rekey.NewVersion{Value: rekey.NewValueString(secret), Label: rekey.LabelCurrent, Source: rekey.SourceManual, Note: "set by hand"})
		if err != nil {
			return err
		}
		if err := tx.PutRotation(&rekey.Rotation{ID: "r", Env: "prod", Mode: rekey.ModeSet, State: rekey.StateDone, Actor: "t", Secrets: map[string]int{"CANARY": added.N}, Started: t0}); err != nil {
			return err
		}
		_, err = tx.Audit(rekey.AuditEntry{Actor: "t", Action: "set", Env: "prod", Secret: "CANARY", Version: added.N, Fingerprint: added.Fingerprint, Outcome: "ok"})
		return err
	})
	contains("the Version AddVersion returned", fmt.Sprintf("%+v %#v", added, added))
	contains("the fingerprint", s.Fingerprint(rekey.NewValueString(secret)))
	var errs []error
	view(t, s, func(tx rekey.Tx) error {
		vs, err := tx.Versions("prod", "CANARY")
		if err != nil {
			return err
		}
		contains("Versions", fmt.Sprintf("%+v %#v", vs, vs))
		m, err := tx.AllLabeled("prod", rekey.LabelCurrent)
		if err != nil {
			return err
		}
		contains("AllLabeled", fmt.Sprintf("%+v %#v", m, m))
		rs, err := tx.Rotations("", false)
		if err != nil {
			return err
		}
		contains("Rotations", fmt.Sprintf("%+v %#v", rs, rs))
		log, err := tx.AuditLog(rekey.AuditFilter{})
		if err != nil {
			return err
		}
		contains("AuditLog", fmt.Sprintf("%+v %#v", log, log))
		v, err := tx.Value("prod", "CANARY", added.N)
		if err != nil {
			return err
		}
		contains("a Value printed with %v", fmt.Sprintf("%v %+v %#v %s %q %x", v, v, v, v, v, v))
		_, err = tx.Value("prod", "CANARY", added.N+1)
		errs = append(errs, err)
		_, err = tx.Labeled("prod", "CANARY", rekey.LabelPending)
		errs = append(errs, err)
		return nil
	})
	errs = append(errs, s.View(ctx(t), func(tx rekey.Tx) error {
		_, err := tx.AddVersion("prod", "CANARY", rekey.NewVersion{Value: rekey.NewValueString(secret)})
		return err
	}))
	errs = append(errs, s.Update(ctx(t), func(tx rekey.Tx) error {
		return tx.SetLabel("prod", "CANARY", 99, rekey.LabelCurrent)
	}))
	for i, err := range errs {
		if err == nil {
			t.Errorf("error #%d is nil, want an error", i+1)
			continue
		}
		contains(fmt.Sprintf("error #%d", i+1), fmt.Sprintf("%v %+v %#v", err, err, err))
	}
}
