package sqlite_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/sqlite"
	"github.com/rekeyhq/rekey/seal"
	"github.com/rekeyhq/rekey/storetest"
	_ "modernc.org/sqlite"
)

func newKey(t *testing.T) seal.Key {
	t.Helper()
	k, err := seal.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// storePath is a store file in a folder Create makes.
func storePath(t *testing.T) string {
	return filepath.Join(t.TempDir(), ".rekey", "store.db")
}

// create makes a store at path and closes it when the test ends.
func create(t *testing.T, path string, key seal.Key) *sqlite.DB {
	t.Helper()
	s, err := sqlite.Create(t.Context(), path, key, "")
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// open opens a store at path and closes it when the test ends.
func open(t *testing.T, path string, key seal.Key) *sqlite.DB {
	t.Helper()
	s, err := sqlite.Open(t.Context(), path, key)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// rawDSN is a DSN for raw access to the store file at path (escaped like
// the store's own: a t.TempDir of a fuzz seed holds a '#'). It leaves the
// journal mode as the store set it, and skips fsync: the files are
// throwaway copies.
func rawDSN(path string) string {
	return "file:" + strings.NewReplacer("%", "%25", "?", "%3F", "#", "%23").Replace(path) + "?_pragma=busy_timeout(5000)&_pragma=synchronous(OFF)"
}

// siblings lists the files next to the store file whose name starts with
// its name (journals, WAL and shared memory files), sorted.
func siblings(t testing.TB, path string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if n := e.Name(); n != filepath.Base(path) && strings.HasPrefix(n, filepath.Base(path)) {
			out = append(out, n)
		}
	}
	return out
}

// journalMode reads the journal mode recorded in a closed store file.
func journalMode(t testing.TB, path string) string {
	t.Helper()
	var mode string
	db := rawDB(t, path)
	if err := db.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil {
		t.Fatalf("PRAGMA journal_mode: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return mode
}

// rawDB opens the store file with plain database/sql, bypassing the store.
func rawDB(t testing.TB, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", rawDSN(path))
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	return db
}

// exec runs raw SQL on the store file and closes the connection.
func exec(t testing.TB, path, q string, args ...any) {
	t.Helper()
	db := rawDB(t, path)
	if _, err := db.Exec(q, args...); err != nil {
		t.Fatalf("raw SQL %q: %v", q, err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

func fileHash(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// fixture is a known set of values stored in a store.
type fixture struct {
	env, name string
	n         int
	value     []byte
}

// fill stores fx (in order, each its next version) in one Update.
func fill(t *testing.T, s rekey.Store, fx []fixture) {
	t.Helper()
	err := s.Update(t.Context(), func(tx rekey.Tx) error {
		for _, f := range fx {
			v, err := tx.AddVersion(f.env, f.name, rekey.NewVersion{Value: rekey.NewValue(f.value), Label: rekey.LabelCurrent, Source: rekey.SourceGenerated})
			if err != nil {
				return err
			}
			if v.N != f.n {
				return fmt.Errorf("%s/%s got v%d, fixture says v%d", f.env, f.name, v.N, f.n)
			}
			if _, err := tx.Audit(rekey.AuditEntry{Actor: "test", Action: "add", Env: f.env, Secret: f.name, Version: v.N, Fingerprint: v.Fingerprint, Outcome: "ok"}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("fill: %v", err)
	}
}

// checkFixture reads every fixture value; it never prints one.
func checkFixture(t *testing.T, s rekey.Store, fx []fixture) {
	t.Helper()
	err := s.View(t.Context(), func(tx rekey.Tx) error {
		for _, f := range fx {
			v, err := tx.Value(f.env, f.name, f.n)
			if err != nil {
				return fmt.Errorf("Value(%s, %s, %d): %w", f.env, f.name, f.n, err)
			}
			if !bytes.Equal(v.Reveal(), f.value) {
				t.Errorf("%s/%s v%d: the value read (%d bytes) is not the value stored (%d bytes)", f.env, f.name, f.n, v.Len(), len(f.value))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("checkFixture: %v", err)
	}
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) rekey.Store {
		s, err := sqlite.Create(t.Context(), storePath(t), newKey(t), "")
		if err != nil {
			t.Fatalf("Create: %v", err)
		}
		return s
	})
}

func TestCreateModes(t *testing.T) {
	path := storePath(t)
	create(t, path, newKey(t))
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if m := st.Mode(); m.Perm() != 0o600 || !m.IsRegular() {
		t.Errorf("store file mode %v, want -rw-------", m)
	}
	dst, err := os.Stat(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if m := dst.Mode(); m.Perm() != 0o700 || !m.IsDir() {
		t.Errorf("store folder mode %v, want drwx------", m)
	}
}

func TestCreateModesUnderPermissiveUmask(t *testing.T) {
	// Modes must not come from the umask alone.
	old := setUmask(0)
	defer setUmask(old)
	TestCreateModes(t)
}

func TestCreateRefusesExisting(t *testing.T) {
	path := storePath(t)
	key := newKey(t)
	s := create(t, path, key)
	fill(t, s, []fixture{{"prod", "A", 1, []byte("a")}})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	before := fileHash(t, path)
	for _, k := range []seal.Key{key, newKey(t)} {
		s2, err := sqlite.Create(t.Context(), path, k, "")
		if err == nil {
			s2.Close()
			t.Fatal("Create over an existing store succeeded")
		}
		if c := rekey.ErrorCode(err); c != rekey.CodeConflict {
			t.Errorf("Create over an existing store: code %d (%v), want CodeConflict", c, err)
		}
		if rekey.ErrorHint(err) == "" {
			t.Errorf("Create over an existing store gives no hint")
		}
	}
	if fileHash(t, path) != before {
		t.Error("a refused Create changed the existing store file")
	}
	checkFixture(t, open(t, path, key), []fixture{{"prod", "A", 1, []byte("a")}})

	// Any existing file, not just a store.
	other := filepath.Join(t.TempDir(), "notes.txt")
	if err := os.WriteFile(other, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := sqlite.Create(t.Context(), other, key, ""); rekey.ErrorCode(err) != rekey.CodeConflict {
		t.Errorf("Create over a plain file: %v, want CodeConflict", err)
	}
	if b, _ := os.ReadFile(other); string(b) != "keep me" {
		t.Error("a refused Create changed the existing file")
	}
}

func TestOpenMissing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "none.db")
	_, err := sqlite.Open(t.Context(), path, newKey(t))
	if c := rekey.ErrorCode(err); c != rekey.CodeNotFound {
		t.Errorf("Open of a missing file: %v (code %d), want CodeNotFound", err, c)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open of a missing file created it")
	}
	if _, _, err := sqlite.KDF(path); rekey.ErrorCode(err) != rekey.CodeNotFound {
		t.Errorf("KDF of a missing file: %v, want CodeNotFound", err)
	}
}

func TestReopenKeepsEverything(t *testing.T) {
	path := storePath(t)
	key := newKey(t)
	s := create(t, path, key)
	fx := []fixture{{"prod", "A", 1, []byte("a1")}, {"prod", "A", 2, []byte("a2")}, {"staging", "B", 1, nil}}
	fill(t, s, fx)
	fp := s.Fingerprint(rekey.NewValueString("a1"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := open(t, path, key)
	checkFixture(t, s2, fx)
	if got := s2.Fingerprint(rekey.NewValueString("a1")); got != fp {
		t.Errorf("fingerprint changed across reopen: %s, was %s", got, fp)
	}
	if n, err := s2.VerifyAudit(t.Context()); err != nil || n != len(fx) {
		t.Errorf("VerifyAudit after reopen = %d, %v; want %d, nil", n, err, len(fx))
	}
	if s2.KeyID() != key.ID() || s2.Path() != path {
		t.Errorf("KeyID/Path = %s/%s, want %s/%s", s2.KeyID(), s2.Path(), key.ID(), path)
	}
	if err := s2.IntegrityCheck(t.Context()); err != nil {
		t.Errorf("IntegrityCheck of a sound store: %v", err)
	}
}

func TestWrongMasterKey(t *testing.T) {
	path := storePath(t)
	key, other := newKey(t), newKey(t)
	s := create(t, path, key)
	fx := []fixture{{"prod", "A", 1, []byte("a1")}}
	fill(t, s, fx)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	before := fileHash(t, path)
	s2, err := sqlite.Open(t.Context(), path, other)
	if err == nil {
		s2.Close()
		t.Fatal("Open with another key succeeded")
	}
	if !errors.Is(err, rekey.ErrWrongKey) {
		t.Errorf("Open with another key: %v, want rekey.ErrWrongKey", err)
	}
	if errors.Is(err, rekey.ErrCorrupt) {
		t.Errorf("Open with another key says the store is damaged: %v", err)
	}
	if c := rekey.ErrorCode(err); c != rekey.CodeAuth {
		t.Errorf("code %d, want CodeAuth", c)
	}
	msg := err.Error()
	if !strings.Contains(msg, key.ID()) || !strings.Contains(msg, other.ID()) {
		t.Errorf("error %q does not name both key IDs %s (store) and %s (given)", msg, key.ID(), other.ID())
	}
	if strings.Contains(msg, key.Encode()) || strings.Contains(msg, other.Encode()) {
		t.Error("error contains key material")
	}
	if rekey.ErrorHint(err) == "" {
		t.Error("no hint for a wrong key")
	}
	if fileHash(t, path) != before {
		t.Error("Open with a wrong key changed the store file")
	}
	if sib := siblings(t, path); len(sib) != 0 {
		t.Errorf("Open with a wrong key left %q next to the store", sib)
	}
	checkFixture(t, open(t, path, key), fx)
}

func TestRotateMasterKeyReopen(t *testing.T) {
	path := storePath(t)
	oldKey, newK := newKey(t), newKey(t)
	s := create(t, path, oldKey)
	fx := []fixture{{"prod", "A", 1, []byte("a1")}, {"prod", "A", 2, []byte("a2")}, {"prod", "B", 1, []byte{}}}
	fill(t, s, fx)
	var fps []string
	for _, f := range fx {
		fps = append(fps, s.Fingerprint(rekey.NewValue(f.value)))
	}
	if err := s.RotateMasterKey(t.Context(), newK); err != nil {
		t.Fatalf("RotateMasterKey: %v", err)
	}
	if s.KeyID() != newK.ID() {
		t.Errorf("KeyID after rotation %s, want %s", s.KeyID(), newK.ID())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	_, err := sqlite.Open(t.Context(), path, oldKey)
	if !errors.Is(err, rekey.ErrWrongKey) {
		t.Errorf("Open with the old key after rotation: %v, want ErrWrongKey", err)
	}
	if err != nil && (!strings.Contains(err.Error(), newK.ID()) || !strings.Contains(err.Error(), oldKey.ID())) {
		t.Errorf("error %q does not name the new key %s and the old key %s", err, newK.ID(), oldKey.ID())
	}
	s2 := open(t, path, newK)
	checkFixture(t, s2, fx)
	for i, f := range fx {
		if got := s2.Fingerprint(rekey.NewValue(f.value)); got != fps[i] {
			t.Errorf("fingerprint %d changed by master key rotation", i)
		}
	}
	if n, err := s2.VerifyAudit(t.Context()); err != nil || n != len(fx) {
		t.Errorf("VerifyAudit after rotation and reopen = %d, %v", n, err)
	}
	if err := s2.IntegrityCheck(t.Context()); err != nil {
		t.Errorf("IntegrityCheck after rotation: %v", err)
	}
	kdf, id, err := sqlite.KDF(path)
	if err != nil || kdf != "" || id != newK.ID() {
		t.Errorf("KDF after rotation = %q, %q, %v; want \"\", %q, nil", kdf, id, err, newK.ID())
	}
}

func TestRotateMasterKeyRejectsForeignKeyType(t *testing.T) {
	s := create(t, storePath(t), newKey(t))
	if err := s.RotateMasterKey(t.Context(), foreignKey{}); err == nil {
		t.Fatal("RotateMasterKey accepted a key that is not a seal.Key")
	}
	fill(t, s, []fixture{{"prod", "A", 1, []byte("still works")}})
}

type foreignKey struct{}

func (foreignKey) ID() string { return "mk_foreign" }

func TestKDF(t *testing.T) {
	params := seal.KDFParams{Time: 1, MemoryKiB: 64, Threads: 1, Salt: []byte("0123456789abcdef")}
	kdf := params.String()
	key := seal.KeyFromPassphrase([]byte("correct horse battery staple"), params)
	path := storePath(t)
	s, err := sqlite.Create(t.Context(), path, key, kdf)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	gotKDF, gotID, err := sqlite.KDF(path)
	if err != nil {
		t.Fatalf("KDF: %v", err)
	}
	if gotKDF != kdf || gotID != key.ID() {
		t.Errorf("KDF = %q, %q; want %q, %q", gotKDF, gotID, kdf, key.ID())
	}
	// The recorded parameters derive the same key again.
	p2, err := seal.ParseKDFParams(gotKDF)
	if err != nil {
		t.Fatalf("ParseKDFParams(KDF): %v", err)
	}
	if !seal.KeyFromPassphrase([]byte("correct horse battery staple"), p2).Equal(key) {
		t.Error("the recorded KDF parameters derive another key")
	}
	// New parameters with a new passphrase key.
	params.Salt = []byte("fedcba9876543210")
	key2 := seal.KeyFromPassphrase([]byte("another passphrase"), params)
	if err := s.RotateMasterKeyKDF(t.Context(), key2, params.String()); err != nil {
		t.Fatal(err)
	}
	if gotKDF, gotID, err = sqlite.KDF(path); err != nil || gotKDF != params.String() || gotID != key2.ID() {
		t.Errorf("KDF after RotateMasterKeyKDF = %q, %q, %v; want %q, %q", gotKDF, gotID, err, params.String(), key2.ID())
	}
	// And back to a random key: no KDF.
	key3 := newKey(t)
	if err := s.RotateMasterKey(t.Context(), key3); err != nil {
		t.Fatal(err)
	}
	if gotKDF, gotID, err = sqlite.KDF(path); err != nil || gotKDF != "" || gotID != key3.ID() {
		t.Errorf("KDF after RotateMasterKey = %q, %q, %v; want \"\", %q", gotKDF, gotID, err, key3.ID())
	}
	// A random-key store records no KDF.
	p4 := storePath(t)
	key4 := newKey(t)
	create(t, p4, key4)
	if gotKDF, gotID, err = sqlite.KDF(p4); err != nil || gotKDF != "" || gotID != key4.ID() {
		t.Errorf("KDF of a random-key store = %q, %q, %v; want \"\", %q", gotKDF, gotID, err, key4.ID())
	}
}

// TestUpdateContextCanceled: a canceled context writes nothing.
func TestUpdateContextCanceled(t *testing.T) {
	s := create(t, storePath(t), newKey(t))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err := s.Update(ctx, func(tx rekey.Tx) error {
		_, err := tx.AddVersion("prod", "A", rekey.NewVersion{Value: rekey.NewValueString("a")})
		return err
	})
	if err == nil {
		t.Fatal("Update with a canceled context succeeded")
	}
	err = s.View(t.Context(), func(tx rekey.Tx) error {
		_, err := tx.Versions("prod", "A")
		return err
	})
	if !errors.Is(err, rekey.ErrNotFound) {
		t.Errorf("after a canceled Update: %v, want ErrNotFound", err)
	}
	fill(t, s, []fixture{{"prod", "A", 1, []byte("a")}})
}

// TestPathSpecialCharacters: the store path goes into a file: URI, where '?',
// '#' and '%' mean something. A folder named with them must hold the store,
// not cut its path short (regression: "a#b/store.db" stored everything in a
// file "a", left store.db empty and lost the DSN pragmas).
func TestPathSpecialCharacters(t *testing.T) {
	// The journal mode the DSN asks for, as a store at a plain path gets it.
	plain := storePath(t)
	if err := create(t, plain, newKey(t)).Close(); err != nil {
		t.Fatal(err)
	}
	wantMode := journalMode(t, plain)
	for _, name := range []string{"a#b", "a?b", "a%20b", "100%", "a%3Fb&c=d", "x?_pragma=journal_mode(OFF)", "sp ace", "ünï"} {
		t.Run(name, func(t *testing.T) {
			top := t.TempDir()
			path := filepath.Join(top, name, ".rekey", "store.db")
			key := newKey(t)
			s, err := sqlite.Create(t.Context(), path, key, "")
			if err != nil {
				t.Fatalf("Create in %q: %v", name, err)
			}
			fx := []fixture{{"prod", "A", 1, []byte("a1")}}
			fill(t, s, fx)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			// Nothing but the folder of the store at the top.
			entries, err := os.ReadDir(top)
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != 1 || entries[0].Name() != name {
				var got []string
				for _, e := range entries {
					got = append(got, e.Name())
				}
				t.Errorf("the temp folder holds %q, want only %q", got, name)
			}
			st, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if st.Size() == 0 || st.Mode().Perm() != 0o600 {
				t.Errorf("store file: %d bytes, mode %v; want a 0600 database", st.Size(), st.Mode())
			}
			s2 := open(t, path, key)
			checkFixture(t, s2, fx)
			if _, id, err := sqlite.KDF(path); err != nil || id != key.ID() {
				t.Errorf("KDF = %q, %v", id, err)
			}
			if err := s2.Close(); err != nil {
				t.Fatal(err)
			}
			// The DSN pragmas after the path were in force.
			if mode := journalMode(t, path); mode != wantMode {
				t.Errorf("journal_mode = %q, want %q as at a plain path", mode, wantMode)
			}
		})
	}
}
