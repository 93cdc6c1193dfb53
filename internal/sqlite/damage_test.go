package sqlite_test

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/sqlite"
	"github.com/rekeyhq/rekey/seal"
)

// canaries returns n distinctive random values (base64 of 24 random bytes).
func canaries(t *testing.T, n int) [][]byte {
	t.Helper()
	out := make([][]byte, n)
	for i := range out {
		b := make([]byte, 24)
		if _, err := rand.Read(b); err != nil {
			t.Fatal(err)
		}
		out[i] = []byte(base64.StdEncoding.EncodeToString(b))
	}
	return out
}

// forms are the encodings of v that must never be found in the file.
func forms(v []byte) map[string][]byte {
	return map[string][]byte{
		"plain":          v,
		"base64":         []byte(base64.StdEncoding.EncodeToString(v)),
		"base64url":      []byte(base64.RawURLEncoding.EncodeToString(v)),
		"hex":            []byte(hex.EncodeToString(v)),
		"HEX":            []byte(strings.ToUpper(hex.EncodeToString(v))),
		"utf16le":        utf16le(v),
		"raw of base64":  mustB64(v),
		"first 16 bytes": v[:16],
	}
}

func utf16le(v []byte) []byte {
	out := make([]byte, 0, 2*len(v))
	for _, c := range v {
		out = append(out, c, 0)
	}
	return out
}

// mustB64 decodes v when it is base64 (the canaries are), else returns v.
func mustB64(v []byte) []byte {
	b, err := base64.StdEncoding.DecodeString(string(v))
	if err != nil {
		return v
	}
	return b
}

// checkNoPlaintext fails if a file in dir holds a canary in any form. It
// names the canary by index and form, never by content.
func checkNoPlaintext(t *testing.T, dir string, values [][]byte) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range values {
			for form, f := range forms(v) {
				if bytes.Contains(b, f) {
					t.Errorf("%s holds canary #%d in %s form", e.Name(), i, form)
				}
			}
		}
	}
}

func TestNoPlaintextInFile(t *testing.T) {
	path := storePath(t)
	dir := filepath.Dir(path)
	key := newKey(t)
	s := create(t, path, key)
	values := canaries(t, 6)
	var fx []fixture
	for i, v := range values {
		fx = append(fx, fixture{[]string{"prod", "staging"}[i%2], "CANARY", i/2 + 1, v})
	}
	fill(t, s, fx)
	checkFixture(t, s, fx)
	checkNoPlaintext(t, dir, values)

	// Rotations, labels moves, pruning and master key rotation add no plaintext either.
	err := s.Update(t.Context(), func(tx rekey.Tx) error {
		if err := tx.SetLabel("prod", "CANARY", 1, rekey.LabelPrevious); err != nil {
			return err
		}
		if err := tx.PutRotation(&rekey.Rotation{ID: "r1", Env: "prod", Mode: rekey.ModeManual, State: rekey.StateDone, Actor: "t", Secrets: map[string]int{"CANARY": 3}}); err != nil {
			return err
		}
		_, err := tx.Prune("staging", "CANARY", 0)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RotateMasterKey(t.Context(), newKey(t)); err != nil {
		t.Fatal(err)
	}
	more := canaries(t, 2)
	fill(t, s, []fixture{{"prod", "CANARY", 4, more[0]}, {"dev", "OTHER", 1, more[1]}})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	checkNoPlaintext(t, dir, append(values, more...))
	// The master key is not in the file either.
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte(key.Encode())) {
		t.Error("the store file holds the master key")
	}
}

// TestMovedCiphertext copies the sealed bytes of one version onto another:
// the associated data binds each ciphertext to its environment, name and
// version, so the moved one does not open.
func TestMovedCiphertext(t *testing.T) {
	for _, c := range []struct {
		name     string
		from, to [3]any // env, name, n
	}{
		{"other version", [3]any{"prod", "A", 1}, [3]any{"prod", "A", 2}},
		{"other secret", [3]any{"prod", "B", 1}, [3]any{"prod", "A", 2}},
		{"other environment", [3]any{"staging", "A", 2}, [3]any{"prod", "A", 2}},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := storePath(t)
			key := newKey(t)
			s := create(t, path, key)
			fx := []fixture{
				{"prod", "A", 1, []byte("prod-a1")}, {"prod", "A", 2, []byte("prod-a2")},
				{"prod", "B", 1, []byte("prod-b1")},
				{"staging", "A", 1, []byte("staging-a1")}, {"staging", "A", 2, []byte("staging-a2")},
			}
			fill(t, s, fx)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			exec(t, path, `UPDATE version SET sealed = (
					SELECT v.sealed FROM version v JOIN secret s ON s.id = v.secret_id WHERE s.env = ? AND s.name = ? AND v.n = ?)
				WHERE secret_id = (SELECT id FROM secret WHERE env = ? AND name = ?) AND n = ?`,
				c.from[0], c.from[1], c.from[2], c.to[0], c.to[1], c.to[2])

			s2 := open(t, path, key)
			err := s2.View(t.Context(), func(tx rekey.Tx) error {
				v, err := tx.Value(c.to[0].(string), c.to[1].(string), c.to[2].(int))
				if err == nil {
					t.Errorf("Value of the target returned %d bytes, want an error", v.Len())
				}
				return err
			})
			if !errors.Is(err, rekey.ErrCorrupt) {
				t.Errorf("Value of a moved ciphertext: %v, want rekey.ErrCorrupt", err)
			}
			want := fmt.Sprintf("%s/%s v%d", c.to[0], c.to[1], c.to[2])
			if err != nil && !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not name %s", err, want)
			}
			// The source and every other version still open.
			var rest []fixture
			for _, f := range fx {
				if [3]any{f.env, f.name, f.n} != c.to {
					rest = append(rest, f)
				}
			}
			checkFixture(t, s2, rest)

			err = s2.IntegrityCheck(t.Context())
			if !errors.Is(err, rekey.ErrCorrupt) {
				t.Errorf("IntegrityCheck: %v, want rekey.ErrCorrupt", err)
			}
			if err != nil && !strings.Contains(err.Error(), want) {
				t.Errorf("IntegrityCheck error %q does not name %s", err, want)
			}
			// A master key rotation refuses to re-seal a damaged store, and keeps it as it was.
			nk := newKey(t)
			if err := s2.RotateMasterKey(t.Context(), nk); !errors.Is(err, rekey.ErrCorrupt) {
				t.Errorf("RotateMasterKey of a damaged store: %v, want ErrCorrupt", err)
			}
			if s2.KeyID() != key.ID() {
				t.Errorf("a failed RotateMasterKey changed KeyID to %s", s2.KeyID())
			}
			checkFixture(t, s2, rest)
			if _, id, _ := sqlite.KDF(path); id != key.ID() {
				t.Errorf("a failed RotateMasterKey recorded key %s", id)
			}
		})
	}
}

// damage is one way to break a store file.
type damage struct {
	name string
	// strict: every error must be rekey.ErrCorrupt.
	strict bool
	apply  func(t *testing.T, b []byte) []byte
}

func damages() []damage {
	ds := []damage{
		{"truncate to half", true, func(_ *testing.T, b []byte) []byte { return b[:len(b)/2] }},
		{"truncate to one page", true, func(_ *testing.T, b []byte) []byte { return b[:4096] }},
		{"truncate inside the header", true, func(_ *testing.T, b []byte) []byte { return b[:50] }},
		{"truncate to 0 bytes", true, func(_ *testing.T, b []byte) []byte { return nil }},
		{"garbage header", true, func(_ *testing.T, b []byte) []byte {
			r := mrand.New(mrand.NewPCG(1, 2))
			for i := range 100 {
				b[i] = byte(r.Uint32())
			}
			return b
		}},
		{"garbage magic", true, func(_ *testing.T, b []byte) []byte { copy(b, "SQLite format 4\x00"); return b }},
		{"zeroed header", true, func(_ *testing.T, b []byte) []byte { clear(b[:100]); return b }},
		{"page size garbage", true, func(_ *testing.T, b []byte) []byte { b[16], b[17] = 0x12, 0x34; return b }},
		{"text file", true, func(_ *testing.T, b []byte) []byte { return []byte("DB_PASSWORD=hunter2\n") }},
	}
	for seed := range uint64(12) {
		ds = append(ds, damage{fmt.Sprintf("512 random bytes in the middle, seed %d", seed), false, func(t *testing.T, b []byte) []byte {
			r := mrand.New(mrand.NewPCG(seed, 99))
			// Somewhere in the middle half of the file, past page 1.
			off := len(b)/4 + r.IntN(len(b)/2)
			if off+512 > len(b) {
				off = len(b) - 512
			}
			for i := off; i < off+512; i++ {
				b[i] = byte(r.Uint32())
			}
			return b
		}})
	}
	for page := range 6 {
		ds = append(ds, damage{fmt.Sprintf("page %d zeroed", page+2), false, func(t *testing.T, b []byte) []byte {
			off := (page + 1) * 4096
			if off+4096 <= len(b) {
				clear(b[off : off+4096])
			}
			return b
		}})
	}
	return ds
}

// TestDamagedFile breaks a copy of a store in many ways. Open and the first
// View or Update either work and return the right values, or fail; they never
// panic and never return a wrong value.
func TestDamagedFile(t *testing.T) {
	dir := t.TempDir()
	pristine := filepath.Join(dir, "pristine.db")
	key := newKey(t)
	s, err := sqlite.Create(t.Context(), pristine, key, "")
	if err != nil {
		t.Fatal(err)
	}
	// 40 values of 200 to 1.6 KB: 10 secrets in 2 environments, 2 versions each.
	var ordered []fixture
	for i := range 40 {
		v := make([]byte, 200+i*37)
		if _, err := rand.Read(v); err != nil {
			t.Fatal(err)
		}
		ordered = append(ordered, fixture{[]string{"prod", "staging"}[i%2], fmt.Sprintf("SECRET_%02d", i/2%10), i/20 + 1, v})
	}
	fill(t, s, ordered)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	orig, err := os.ReadFile(pristine)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("pristine store: %d bytes, %d values", len(orig), len(ordered))

	for i, d := range damages() {
		t.Run(d.name, func(t *testing.T) {
			path := filepath.Join(dir, fmt.Sprintf("damaged-%d.db", i))
			b := d.apply(t, bytes.Clone(orig))
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
			checkDamaged(t, path, key, ordered, d.strict)
		})
	}
}

func checkDamaged(t *testing.T, path string, key seal.Key, fx []fixture, strict bool) {
	t.Helper()
	fail := func(stage string, err error) {
		t.Helper()
		if strict && !errors.Is(err, rekey.ErrCorrupt) {
			t.Errorf("%s: %v (code %d), want rekey.ErrCorrupt", stage, err, rekey.ErrorCode(err))
		} else {
			t.Logf("%s: %v", stage, err)
		}
	}
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("panic on a damaged store: %v", r)
		}
	}()
	s, err := sqlite.Open(t.Context(), path, key)
	if err != nil {
		fail("Open", err)
		return
	}
	defer s.Close()
	read := 0
	err = s.View(t.Context(), func(tx rekey.Tx) error {
		for _, f := range fx {
			v, err := tx.Value(f.env, f.name, f.n)
			if err != nil {
				if errors.Is(err, rekey.ErrCorrupt) || errors.Is(err, rekey.ErrNotFound) {
					continue // refused, not wrong
				}
				return fmt.Errorf("Value(%s, %s, %d): %w", f.env, f.name, f.n, err)
			}
			if !bytes.Equal(v.Reveal(), f.value) {
				t.Errorf("%s/%s v%d: a damaged store returned a wrong value (%d bytes, want %d)", f.env, f.name, f.n, v.Len(), len(f.value))
			}
			read++
		}
		return nil
	})
	if err != nil {
		fail("View", err)
	}
	t.Logf("%d of %d values read back intact", read, len(fx))
	if _, err := s.VerifyAudit(t.Context()); err != nil {
		t.Logf("VerifyAudit: %v", err)
	}
	if err := s.IntegrityCheck(t.Context()); err != nil {
		t.Logf("IntegrityCheck: %v", err)
	}
	err = s.Update(t.Context(), func(tx rekey.Tx) error {
		_, err := tx.AddVersion("prod", "SECRET_00", rekey.NewVersion{Value: rekey.NewValueString("new"), Label: rekey.LabelCurrent})
		return err
	})
	if err != nil {
		fail("Update", err)
	}
}

// TestDamagedMetadata edits the store's own records with raw SQL: a damaged
// key check with the right key is ErrCorrupt (not ErrWrongKey), a missing
// table or an unreadable rotation is ErrCorrupt.
func TestDamagedMetadata(t *testing.T) {
	// flip changes one byte in the middle of a meta value.
	flip := func(k string) func(testing.TB, string) {
		return func(t testing.TB, path string) {
			db := rawDB(t, path)
			var v []byte
			if err := db.QueryRow(`SELECT v FROM meta WHERE k = ?`, k).Scan(&v); err != nil {
				t.Fatal(err)
			}
			v[len(v)/2] ^= 0x01
			if _, err := db.Exec(`UPDATE meta SET v = ? WHERE k = ?`, v, k); err != nil {
				t.Fatal(err)
			}
		}
	}
	raw := func(q string) func(testing.TB, string) {
		return func(t testing.TB, path string) { exec(t, path, q) }
	}
	for _, c := range []struct {
		name      string
		edit      func(t testing.TB, path string)
		otherKey  bool // open with another key
		wantErr   error
		openFails bool // else the error comes from the first use
	}{
		{"key check changed", flip("key_check"), false, rekey.ErrCorrupt, true},
		{"key check changed, other key", flip("key_check"), true, rekey.ErrWrongKey, true},
		{"key check deleted", raw(`DELETE FROM meta WHERE k = 'key_check'`), false, rekey.ErrCorrupt, true},
		{"fingerprint key changed", flip("fp_key"), false, rekey.ErrCorrupt, true},
		{"audit key changed", flip("audit_key"), false, rekey.ErrCorrupt, true},
		{"audit key deleted", raw(`DELETE FROM meta WHERE k = 'audit_key'`), false, rekey.ErrCorrupt, true},
		{"unknown format", raw(`UPDATE meta SET v = CAST('4' AS BLOB) WHERE k = 'format'`), false, rekey.ErrCorrupt, true},
		{"format 1 (before 0.1)", raw(`UPDATE meta SET v = CAST('1' AS BLOB) WHERE k = 'format'`), false, rekey.ErrCorrupt, true},
		{"meta table dropped", raw(`DROP TABLE meta`), false, rekey.ErrCorrupt, true},
		{"version table dropped", raw(`DROP TABLE version`), false, rekey.ErrCorrupt, false},
		{"audit table dropped", raw(`DROP TABLE audit`), false, rekey.ErrCorrupt, true},
		{"rotation steps garbage", raw(`UPDATE rotation SET steps = '{not json'`), false, rekey.ErrCorrupt, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := storePath(t)
			key := newKey(t)
			s := create(t, path, key)
			fill(t, s, []fixture{{"prod", "A", 1, []byte("a1")}})
			if err := s.Update(t.Context(), func(tx rekey.Tx) error {
				return tx.PutRotation(&rekey.Rotation{ID: "r1", Env: "prod", Mode: rekey.ModeManual, State: rekey.StateRunning, Actor: "t", Steps: []rekey.Step{{Name: "create"}}})
			}); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			c.edit(t, path)
			k := key
			if c.otherKey {
				k = newKey(t)
			}
			s2, err := sqlite.Open(t.Context(), path, k)
			if c.openFails {
				if err == nil {
					s2.Close()
					t.Fatal("Open succeeded")
				}
				if !errors.Is(err, c.wantErr) {
					t.Errorf("Open: %v, want %v", err, c.wantErr)
				}
				if c.wantErr == rekey.ErrCorrupt && errors.Is(err, rekey.ErrWrongKey) {
					t.Errorf("Open with the right key blames the key: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer s2.Close()
			// Every reader either works or fails with the expected error; at
			// least one of them fails.
			var errs []error
			errs = append(errs, s2.View(t.Context(), func(tx rekey.Tx) error {
				_, err := tx.Value("prod", "A", 1)
				return err
			}))
			errs = append(errs, s2.View(t.Context(), func(tx rekey.Tx) error {
				_, err := tx.Rotations("", false)
				return err
			}))
			_, err = s2.VerifyAudit(t.Context())
			errs = append(errs, err, s2.IntegrityCheck(t.Context()))
			failed := 0
			for i, err := range errs {
				if err == nil {
					continue
				}
				failed++
				if !errors.Is(err, c.wantErr) {
					t.Errorf("reader #%d: %v, want %v", i+1, err, c.wantErr)
				}
			}
			if failed == 0 {
				t.Error("no reader noticed the damage")
			}
		})
	}
}
