// Package sqlite is the embedded [rekey.Store]: one SQLite file (pure Go,
// no cgo), created 0600, every value sealed under the master key with
// associated data binding environment, name and version.
//
// The file holds no plaintext secret. Its metadata table holds the store
// format version, the master key ID, the KDF parameters when the master key
// comes from a passphrase, a key check, and the fingerprint and audit keys
// sealed under the master key (so fingerprints and the audit chain survive
// master key rotation).
package sqlite

import (
	"context"
	"crypto/rand"
	"database/sql"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/seal"
	sqlite3 "modernc.org/sqlite"
	sqlite3lib "modernc.org/sqlite/lib"
)

// formatVersion 3: every row authenticated (auth.go). 2: packed audit
// blocks, compact version metadata, value forms (upgraded on open, upgrade.go).
const formatVersion = "3"

//go:embed schema.sql
var schema string

const keyCheckPlain = "rekey key check v1"

// DB is the embedded store.
type DB struct {
	db     *sql.DB
	path   string
	sealer *seal.Sealer
	fp     *seal.Fingerprinter
	audit  []byte
	// rowKey authenticates every row (auth.go); derived from the audit key.
	rowKey []byte
	macs   sync.Pool // keyed HMAC-SHA256 states under rowKey
	keyID  string
	// storeID names the store in its anchor (anchor.go).
	storeID string
	// head is the audit head as of the last transaction (seq, hash).
	headSeq  int64
	headHash []byte
	anchor   anchorState
	// Now is the clock; tests replace it.
	Now func() time.Time
}

var _ rekey.Store = (*DB)(nil)

// uriPath escapes the characters a file: URI would read as an escape, the
// query or a fragment, so a path holding them names the same file.
var uriPath = strings.NewReplacer("%", "%25", "?", "%3F", "#", "%23")

func dsn(path string) string {
	return "file:" + uriPath.Replace(path) + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=foreign_keys(1)&_txlock=immediate"
}

// Create makes a new store file at path (mode 0600, parent 0700) sealed under
// key. kdf is the passphrase KDF parameter string, or "" for a random key.
// It refuses to overwrite an existing file.
func Create(ctx context.Context, path string, key seal.Key, kdf string, opts ...Option) (*DB, error) {
	if err := checkFiles(path); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dirOf(path), 0o700); err != nil {
		return nil, fmt.Errorf("create store folder: %w", err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, rekey.Errorf(rekey.CodeConflict, "store %s already exists", path).WithHint("pass --force to replace it (its secrets are lost unless backed up)")
		}
		return nil, fmt.Errorf("create store: %w", err)
	}
	f.Close()
	db, err := sql.Open("sqlite", dsn(path))
	if err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("open store: %w", err)
	}
	db.SetMaxOpenConns(1)
	s := &DB{db: db, path: path, Now: time.Now}
	for _, o := range opts {
		o(s)
	}
	fpKey, auditKey, storeID := make([]byte, 32), make([]byte, 32), make([]byte, 16)
	for _, b := range [][]byte{fpKey, auditKey, storeID} {
		if _, err := rand.Read(b); err != nil {
			return nil, err
		}
	}
	s.rowKey = deriveKey(auditKey, "row")
	sealer := seal.NewSealer(key)
	err = s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.Exec(schema); err != nil {
			return fmt.Errorf("create schema: %w", err)
		}
		meta := map[string][]byte{
			"format":    []byte(formatVersion),
			"key_id":    []byte(key.ID()),
			"kdf":       []byte(kdf),
			"key_check": sealer.Seal([]byte(keyCheckPlain), seal.AD("key-check")),
			"fp_key":    sealer.Seal(fpKey, seal.AD("fingerprint-key")),
			"audit_key": sealer.Seal(auditKey, seal.AD("audit-key")),
			"created":   []byte(strconv.FormatInt(time.Now().Unix(), 10)),
			"store_id":  []byte(hex.EncodeToString(storeID)),
		}
		for k, v := range meta {
			if _, err := tx.Exec(`INSERT INTO meta(k, v) VALUES (?, ?)`, k, v); err != nil {
				return err
			}
		}
		_, err := s.writeState(tx)
		return err
	})
	if err != nil {
		db.Close()
		os.Remove(path)
		return nil, err
	}
	if err := s.load(ctx, key); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// KDF returns the passphrase KDF parameters recorded in the store at path
// ("" when its master key is not passphrase-derived), and its key ID.
func KDF(path string) (kdf, keyID string, err error) {
	db, err := openRaw(path)
	if err != nil {
		return "", "", err
	}
	defer db.Close()
	var k, id []byte
	if err := db.QueryRow(`SELECT v FROM meta WHERE k = 'kdf'`).Scan(&k); err != nil {
		return "", "", mapErr(err)
	}
	if err := db.QueryRow(`SELECT v FROM meta WHERE k = 'key_id'`).Scan(&id); err != nil {
		return "", "", mapErr(err)
	}
	return string(k), string(id), nil
}

func openRaw(path string) (*sql.DB, error) {
	if err := checkFiles(path); err != nil {
		return nil, err
	}
	st, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, rekey.Errorf(rekey.CodeNotFound, "no store at %s", path).WithHint("run `rekey init --env-file .env` first")
		}
		return nil, fmt.Errorf("open store: %w", err)
	}
	if st.Size() == 0 {
		return nil, corrupt("empty file")
	}
	db, err := sql.Open("sqlite", dsn(path))
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	db.SetMaxOpenConns(1)
	return db, nil
}

// Open opens an existing store with its master key. A wrong key is
// rekey.ErrWrongKey; a damaged file is rekey.ErrCorrupt. Nothing is written.
//
// A store of format 2 is upgraded in place to format 3 first (upgrade.go),
// and a store made before incidents gets their tables (tx_incidents.go).
// Then the state and every secret and rotation row are authenticated
// (version rows are, each time one is read), and with WithAnchor the store
// is compared with the anchor kept outside it (anchor.go): a store rolled
// back to an older copy, or whose audit log was truncated, is refused with
// rekey.CodeAuth before anything reads it.
func Open(ctx context.Context, path string, key seal.Key, opts ...Option) (*DB, error) {
	db, err := openRaw(path)
	if err != nil {
		return nil, err
	}
	s := &DB{db: db, path: path, Now: time.Now}
	for _, o := range opts {
		o(s)
	}
	if err := s.load(ctx, key); err != nil {
		db.Close()
		return nil, err
	}
	if err := s.View(ctx, func(t rekey.Tx) error { return t.(*txn).verifyRows() }); err != nil {
		db.Close()
		return nil, err
	}
	if err := s.checkAnchor(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// Option configures Open.
type Option func(*DB)

func corrupt(detail string) error {
	return &rekey.Error{Code: rekey.CodeAuth, Msg: "store is damaged (" + detail + ")", Hint: rekey.ErrCorrupt.Hint, Err: rekey.ErrCorrupt}
}

func (s *DB) load(ctx context.Context, key seal.Key) error {
	meta := map[string][]byte{}
	rows, err := s.db.QueryContext(ctx, `SELECT k, v FROM meta`)
	if err != nil {
		return mapErr(err)
	}
	for rows.Next() {
		var k string
		var v []byte
		if err := rows.Scan(&k, &v); err != nil {
			rows.Close()
			return mapErr(err)
		}
		meta[k] = v
	}
	if err := rows.Close(); err != nil {
		return mapErr(err)
	}
	if err := rows.Err(); err != nil {
		return mapErr(err)
	}
	if string(meta["format"]) == "1" {
		return &rekey.Error{Code: rekey.CodeAuth, Msg: "store format 1 was written by a development build of rekey before 0.1 and cannot be read",
			Hint: "export the values with that build (`rekey run -- env`), then `rekey init --force` and `rekey set` each", Err: rekey.ErrCorrupt}
	}
	if f := string(meta["format"]); f != formatVersion && f != "2" {
		return corrupt("unknown format " + strconv.Quote(f))
	}
	sealer := seal.NewSealer(key)
	if _, err := sealer.Open(meta["key_check"], seal.AD("key-check")); err != nil {
		if string(meta["key_id"]) != key.ID() {
			return &rekey.Error{Code: rekey.CodeAuth, Msg: fmt.Sprintf("wrong master key: the store expects %s, the key given is %s", meta["key_id"], key.ID()), Hint: rekey.ErrWrongKey.Hint, Err: rekey.ErrWrongKey}
		}
		return corrupt("key check does not open")
	}
	fpKey, err := sealer.Open(meta["fp_key"], seal.AD("fingerprint-key"))
	if err != nil {
		return corrupt("fingerprint key does not open")
	}
	auditKey, err := sealer.Open(meta["audit_key"], seal.AD("audit-key"))
	if err != nil {
		return corrupt("audit key does not open")
	}
	fp, err := seal.NewFingerprinter(fpKey)
	if err != nil {
		return corrupt("fingerprint key")
	}
	s.sealer, s.fp, s.audit, s.keyID = sealer, fp, auditKey, key.ID()
	s.rowKey = deriveKey(auditKey, "row")
	if string(meta["format"]) == "2" {
		if err := s.upgrade(ctx); err != nil {
			var re *rekey.Error
			if !errors.As(err, &re) {
				// Not I/O (mapped already): the tables are not format 2's.
				err = corrupt("format 2 store with other tables: " + err.Error())
			}
			return fmt.Errorf("upgrade store to format %s: %w", formatVersion, err)
		}
		if meta, err = readMeta(s.db); err != nil {
			return mapErr(err)
		}
	}
	if err := s.ensureIncidentTables(ctx); err != nil {
		return fmt.Errorf("add the incident and outbox tables: %w", err)
	}
	s.storeID = string(meta["store_id"])
	return nil
}

// Path is the store file.
func (s *DB) Path() string { return s.path }

// KeyID is the ID of the master key the store is sealed under.
func (s *DB) KeyID() string { return s.keyID }

// Close saves the anchor (when Open was given one and the audit head moved)
// and closes the database. A failure to save the anchor is returned after
// the database is closed: nothing of the store is lost by it.
func (s *DB) Close() error {
	aerr := s.saveAnchor()
	if err := s.db.Close(); err != nil {
		return err
	}
	return aerr
}

// Fingerprint implements rekey.Store.
func (s *DB) Fingerprint(v rekey.Value) string { return s.fp.Fingerprint(v.Reveal()) }

// IntegrityCheck runs SQLite's full integrity check and verifies that every
// sealed value opens. It reads everything; use it in recover and doctor.
func (s *DB) IntegrityCheck(ctx context.Context) error {
	var res string
	if err := s.db.QueryRowContext(ctx, `PRAGMA integrity_check`).Scan(&res); err != nil {
		return mapErr(err)
	}
	if res != "ok" {
		return corrupt("integrity check: " + res)
	}
	return s.Authenticate(ctx, true)
}

// Authenticate checks every row of the store, not only those a command
// reads: every secret head, every version row (with open, that its sealed
// value opens), every rotation, incident and outbox item. The error names
// the first row that fails.
func (s *DB) Authenticate(ctx context.Context, open bool) error {
	return s.View(ctx, func(t rekey.Tx) error {
		tx := t.(*txn)
		if err := tx.verifyRows(); err != nil {
			return err
		}
		err := rekey.EachVersion(tx, func(v rekey.Version) error {
			if !open {
				return nil
			}
			_, err := tx.Value(v.Env, v.Name, v.N)
			return err
		})
		if err != nil {
			return err
		}
		// Version rows of no secret at all, or of one that lists none
		// (EachVersion reads the secrets that list versions).
		var orphans int
		if err := tx.tx.QueryRow(`SELECT COUNT(*) FROM version WHERE secret_id NOT IN (SELECT id FROM secret WHERE vset != '')`).Scan(&orphans); err != nil {
			return err
		}
		if orphans > 0 {
			return tampered(fmt.Sprintf("%d version rows", orphans), "belong to no secret (inserted)")
		}
		if _, err = tx.rotations(""); err != nil {
			return err
		}
		return tx.verifyIncidentRows()
	})
}

func valueAD(env, name string, n int) []byte {
	return seal.AD("value", env, name, strconv.Itoa(n))
}

func mapErr(err error) error {
	if err == nil {
		return nil
	}
	var se *sqlite3.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqlite3lib.SQLITE_CORRUPT, sqlite3lib.SQLITE_NOTADB:
			return corrupt("sqlite: " + se.Error())
		case sqlite3lib.SQLITE_IOERR:
			return &rekey.Error{Code: rekey.CodeInternal, Msg: "store: disk I/O error", Hint: "is the disk full? free space and run `rekey recover`; the last committed state is intact", Err: err}
		case sqlite3lib.SQLITE_FULL:
			return &rekey.Error{Code: rekey.CodeInternal, Msg: "disk full", Hint: "free space and run `rekey recover`; nothing was half-written", Err: err}
		case sqlite3lib.SQLITE_READONLY, sqlite3lib.SQLITE_CANTOPEN, sqlite3lib.SQLITE_PERM:
			return &rekey.Error{Code: rekey.CodeInternal, Msg: "store not writable", Hint: "check the permissions of .rekey/", Err: err}
		}
	}
	if strings.Contains(err.Error(), "no such table") {
		return corrupt("missing table")
	}
	if strings.Contains(err.Error(), "sql: Scan error") {
		// A column of the wrong type anywhere else (audit rows, meta).
		return corrupt("a row holds a value of the wrong type")
	}
	return err
}

func (s *DB) tx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return mapErr(err)
	}
	// Also when fn panics: else the only connection stays in the transaction.
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return mapErr(err)
	}
	return mapErr(tx.Commit())
}

// View implements rekey.Store. The store's state is authenticated before fn
// runs (auth.go).
func (s *DB) View(ctx context.Context, fn func(rekey.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return mapErr(err)
	}
	defer tx.Rollback()
	m, err := s.checkState(tx)
	if err != nil {
		return mapErr(err)
	}
	return mapErr(fn(&txn{s: s, tx: tx, man: m}))
}

// Update implements rekey.Store. The store's state is authenticated before
// fn runs, and written anew with what fn changed before the commit.
func (s *DB) Update(ctx context.Context, fn func(rekey.Tx) error) error {
	var m *manifest
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var err error
		if m, err = s.checkState(tx); err != nil {
			return err
		}
		t := &txn{s: s, tx: tx, rw: true, man: m}
		if err := fn(t); err != nil {
			return err
		}
		if !t.dirty {
			m = nil
			return nil
		}
		return s.writeManifest(tx, m)
	})
	if err == nil && m != nil {
		s.headSeq, s.headHash = m.auditSeq, m.auditHash
	}
	return err
}

// RotateMasterKey implements rekey.Store.
func (s *DB) RotateMasterKey(ctx context.Context, newKey rekey.MasterKey) error {
	nk, ok := newKey.(seal.Key)
	if !ok {
		return fmt.Errorf("rotate master key: unsupported key type %T", newKey)
	}
	return s.rotateMaster(ctx, nk, "")
}

// RotateMasterKeyKDF is RotateMasterKey recording new passphrase KDF parameters ("" for none).
func (s *DB) RotateMasterKeyKDF(ctx context.Context, nk seal.Key, kdf string) error {
	return s.rotateMaster(ctx, nk, kdf)
}

func (s *DB) rotateMaster(ctx context.Context, nk seal.Key, kdf string) error {
	ns := seal.NewSealer(nk)
	err := s.tx(ctx, func(tx *sql.Tx) error {
		m, err := s.checkState(tx)
		if err != nil {
			return err
		}
		meta := map[string][2][]byte{}
		for _, k := range []string{"fp_key", "audit_key"} {
			var v []byte
			if err := tx.QueryRow(`SELECT v FROM meta WHERE k = ?`, k).Scan(&v); err != nil {
				return err
			}
			ad := seal.AD(map[string]string{"fp_key": "fingerprint-key", "audit_key": "audit-key"}[k])
			p, err := s.sealer.Open(v, ad)
			if err != nil {
				return corrupt(k + " does not open")
			}
			meta[k] = [2][]byte{ns.Seal(p, ad)}
		}
		upd := map[string][]byte{
			"fp_key":    meta["fp_key"][0],
			"audit_key": meta["audit_key"][0],
			"key_check": ns.Seal([]byte(keyCheckPlain), seal.AD("key-check")),
			"key_id":    []byte(nk.ID()),
			"kdf":       []byte(kdf),
		}
		for k, v := range upd {
			if _, err := tx.Exec(`UPDATE meta SET v = ? WHERE k = ?`, v, k); err != nil {
				return err
			}
		}
		rows, err := tx.Query(`SELECT v.secret_id, s.env, s.name, v.n, v.sealed FROM version v JOIN secret s ON s.id = v.secret_id`)
		if err != nil {
			return err
		}
		type upd2 struct {
			id, n  int64
			sealed []byte
		}
		var ups []upd2
		for rows.Next() {
			var id, n int64
			var env, name string
			var sealed []byte
			if err := rows.Scan(&id, &env, &name, &n, &sealed); err != nil {
				rows.Close()
				return err
			}
			ad := valueAD(env, name, int(n))
			p, err := s.sealer.Open(sealed, ad)
			if err != nil {
				rows.Close()
				return corrupt(fmt.Sprintf("%s/%s v%d does not open", env, name, n))
			}
			ups = append(ups, upd2{id, n, ns.Seal(p, ad)})
			seal.Wipe(p)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, u := range ups {
			if _, err := tx.Exec(`UPDATE version SET sealed = ? WHERE secret_id = ? AND n = ?`, u.sealed, u.id, u.n); err != nil {
				return err
			}
		}
		return s.writeManifest(tx, m) // the meta rows changed; the rows did not
	})
	if err != nil {
		return err
	}
	s.sealer, s.keyID = ns, nk.ID()
	return nil
}

func dirOf(path string) string {
	i := strings.LastIndexByte(path, os.PathSeparator)
	if i < 0 {
		return "."
	}
	return path[:i]
}
