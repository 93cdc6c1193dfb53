// Package reencrypt moves the encrypted columns of a PostgreSQL database
// from an old data key to a new one (ENCRYPTION_KEY rotation) without
// losing a row: [Run] re-encrypts, [Count] says which key each value opens
// with, [Rehearse] runs the whole job on a copy of the database first.
//
// # Guarantees
//
//   - A value is written only after its new ciphertext was decrypted again
//     (through the whole column decoding) and compared with the plaintext.
//   - A row is written only if it is still the version that was read
//     (compare-and-swap, below): a concurrent application write is never
//     overwritten. Rows whose swap missed are read again, under a row
//     lock, and redone within the same batch, before the table is done.
//   - Values already on the new key, NULLs and empty values are left as
//     they are. A row with a value that opens with neither key is not
//     written at all: it is reported (table, key, column) in
//     [Result].Failures, the run goes on, and Run returns an error wrapping
//     [ErrUndecryptable] at the end (keep the old key).
//   - Each batch commits together with its checkpoint, so a crash, kill -9
//     or Ctrl-C loses at most the batches in flight, and a run with the
//     same job id resumes after the checkpoint. Correctness does not depend
//     on the checkpoint: a run from the start skips what is done.
//   - Keys, plaintexts and ciphertexts never appear in errors (nor in
//     [Job] or [Result] printed); keys are [rekey.Value]s, and the server
//     only ever sees ciphertexts, never a key or a plaintext.
//
// # Columns
//
// [rekey.ReencryptSpec].Columns lists the encrypted columns:
//
//	patients.email                  table.column (search_path resolution)
//	billing.invoices.iban           schema.table.column
//	legacy(tenant, id).secret       key columns named: for tables without a primary key
//	"Odd.Table"."Col"               double quotes for names holding . ( ) , or "
//
// Names are exact (case-sensitive). Rows are identified and paged by the
// primary key (composite keys too), or by the named key columns, which
// must be NOT NULL and exactly the columns of a unique index. All the
// columns of one table are handled in one pass, each row once. Text
// encodings need a text or varchar column (domains over them too), bytea
// a bytea column. Partitioned tables work.
//
// # Codecs
//
// The codec is how the application encrypts one value:
//
//	aes-256-gcm        nonce (12 bytes) || ciphertext || tag (16 bytes), no associated data:
//	                   Go crypto/cipher, Rust aes-gcm, Python AESGCM, Node createCipheriv
//	                   with the IV prepended and getAuthTag() appended
//	chacha20-poly1305  the same layout with ChaCha20-Poly1305 (12-byte nonce)
//	fernet             a Fernet token (Python cryptography's Fernet): the URL-safe base64 of
//	                   0x80 || timestamp (8 bytes) || IV (16) || AES-128-CBC || HMAC-SHA256 (32);
//	                   re-encryption keeps the token's timestamp (as MultiFernet.rotate does)
//	command            an external program (protocol below)
//
// Keys come from the secret's value: for aes-256-gcm and chacha20-poly1305
// the base64 (standard or URL-safe, padded or not) or hex of exactly 32
// bytes; for fernet the URL-safe base64 of 32 bytes (Fernet.generate_key);
// for command the value as it is, handed to the program.
//
// # Column encodings
//
// [rekey.ReencryptSpec].Encoding is how the codec's bytes are stored:
//
//	base64     text, standard alphabet        (default for the byte codecs)
//	base64url  text, URL-safe alphabet
//	hex        text, either case read
//	bytea      a bytea column, the raw bytes  (fernet: the token's ASCII bytes)
//	text       text, the codec's output as it is (fernet's default; command codecs that emit text)
//
// A replacement is written in the style of the value it replaces: with or
// without base64 padding, hex in the same case. When the value gives no
// clue (its length needs no padding but the new one does, which only
// happens when the key-id header is added) base64 is padded.
//
// # Key-id header
//
// With [rekey.ReencryptSpec].KeyID, every NEW ciphertext starts with an 8-byte header
// naming its key, so that a reader picks the key without trying each one:
//
//	"rki" 0x01 || fingerprint (4 bytes) || the codec's bytes
//
// fingerprint = first 4 bytes of HMAC-SHA256(key, "rekey key-id v1"),
// where key is the decoded 32-byte key (the secret's bytes for the
// command codec); see [Fingerprint]. The header is inside the column
// encoding (base64 of header || nonce || ...). It is for applications
// written from now on; values with and without it are read either way
// (an unheaded value that happens to start like a header still opens).
// It is not available with fernet, whose tokens have a fixed format.
//
// # Command codec protocol
//
// With codec command, rekey starts [rekey.ReencryptSpec].Command once per run (its
// arguments hold no key material) and talks to it over stdin and stdout,
// one line per request and one line per answer, in order:
//
//	open <key> <data>\n   →  ok <plaintext>\n   or  err <reason>\n
//	seal <key> <data>\n   →  ok <ciphertext>\n  or  err <reason>\n
//
// Every field is standard base64 (padded; an empty field is empty). <key>
// is the secret's value as rekey holds it: keys travel on stdin only, in
// every request (the program keeps no state). <data> and the answers are
// the codec's raw bytes (what the column encoding wraps). "err" to an
// open means the value does not open with that key; "err" to a seal fails
// the run; the reason is never shown (it could quote its input). rekey
// pipelines requests from several goroutines, so the program must answer
// each line as it comes (flushing stdout), not wait for more input; it
// exits when stdin closes. Its stderr is passed through ([Job].Stderr).
// A program that dies or answers anything else fails the run; nothing
// unverified is ever written. testdata/codec.py is a complete example.
//
// # How a run works
//
// Per table, a reader fetches batches in key order with keyset pagination
// (SELECT ctid, xmin, key::text, columns ... WHERE (key) > ($last) ORDER
// BY key LIMIT n), crypto workers (one per CPU) re-encrypt them, and two
// writer connections write them (a run uses three connections), each
// batch in ONE statement:
//
//	WITH u AS (UPDATE t SET c1 = COALESCE(v.n1, t.c1), ...
//	           FROM unnest($ctids::tid[], $xmins::xid[], $keys::text[], $n1::text[], ...) AS v(...)
//	           WHERE t.ctid = v.c AND t.xmin = v.x AND t.key = v.k::keytype RETURNING 1),
//	     c AS (INSERT INTO checkpoint ... WHERE (SELECT count(*) FROM u) = $n ...)
//	SELECT (SELECT count(*) FROM u), (SELECT count(*) FROM c)
//
// The compare-and-swap is the row version: a row is found by its ctid (a
// direct heap fetch; by key on partitioned tables) and written only if its
// key and xmin are the ones read. Every update of a row creates a version
// with the updater's transaction id as xmin, so an unchanged xmin means
// unchanged values; the key check guards against a table rewrite (VACUUM
// FULL, CLUSTER) moving another row of the same transaction to that ctid.
// Under READ COMMITTED a concurrent update makes PostgreSQL re-check the
// condition on the newest version, which fails. When fewer rows than sent
// were updated, the checkpoint is not written, and the batch's rows are
// re-read by key with FOR NO KEY UPDATE in a short transaction; the ones
// holding what rekey wrote are done, vanished ones (deleted) are skipped,
// the others are redone from their current values (which may now be on
// the new key, or undecryptable) and written, locked, with the checkpoint.
// Deadlocks and serialization failures are retried.
//
// Only ciphertexts travel to the server, as binary array parameters; with
// log_statement = all they appear in the server log (ciphertexts, never
// keys or plaintexts).
//
// A session advisory lock per table (class "rkey", the table's oid)
// keeps two runs off the same table; it goes away with a crashed run's
// session. [rekey.ReencryptSpec].RowsPerSecond caps the rows read per second (batches
// shrink to a quarter of a second's worth). Online (Mode online, Pace not
// full) the rate adapts below that ceiling: a [Controller] (pace.go: a pure
// AIMD core, decisions logged through [Job].OnPace) is fed by a probe
// connection (pace_run.go) with the probe query's latency, lock waits on
// the table and active connections. Before each batch the reader holds
// while a streaming replica's replay lag is over 80% of
// ReplicaLagCeiling (replica.go: pg_stat_replication and the replicas of
// [Job].Replicas; decisions through [Job].OnLag). A cancelled context stops the
// run after the batches being written (Run returns an error wrapping
// [ErrInterrupted]); a write still waiting a few seconds later (on a row
// another session holds locked) is cancelled on the server, and its batch
// rolls back with its checkpoint. Progress totals are pg_class.reltuples
// while the statistics are fresh, else count(*) (estimateRows).
//
// Every configured table and column is looked up in the catalog first
// ([Check] does only that): one the database lacks is named, with the
// nearest names it has (a typo), before anything is read, copied or
// written.
//
// # Applications during a run
//
// Applications may keep running. Their writes are never lost (above). An
// instance that still encrypts with the old key keeps producing old-key
// values, in rows the run has passed already; likewise a row whose key
// changes during the run may be passed over. So: deploy the new key to
// every instance first (reading with both keys, writing with the new
// one), re-encrypt, then [Count]: the old key may go only when no value
// opens with it (run again otherwise: it only touches what is left).
//
// # Checkpoint
//
// The checkpoint table rekey_reencrypt_checkpoint(job_id, table_name,
// last_pk text[], done, rows_done, key_fp, updated_at) is created in
// ReencryptSpec.CheckpointSchema, by default the first schema of the
// search_path (CheckpointTable), owned by the role that owns the tables
// (SET LOCAL ROLE to it for the CREATE, when the session's role is a
// member that may; else created by the session's role and granted to the
// owner), so that every role of an alternating pair can resume and drop
// it (checkpoint.go); a table the session's role owns (left by an older
// rekey) is handed to the tables' owner the same way. A batch's statement
// writes the key after which every row is done (batches commit out of
// order: the end of the longest committed run of batches, never moving
// back), so the checkpoint is never ahead of the data. A checkpoint made
// with other keys (another rotation reusing the job id) is ignored. When
// the job has made a full pass — even with undecryptable values — its
// rows are deleted, and the table is dropped when no other job has rows
// in it. A role that may not create the table runs without a checkpoint
// ([Result].Checkpoint is empty): after a crash it starts over, skipping
// what is on the new key.
//
// The watermark is trusted: a run skips the rows up to last_pk (every row
// of a done table) without reading them, so a forged row (job id and
// key_fp are visible to whoever can read the table) would skip rows still
// on the old key. An existing table is therefore used only when every role
// that owns it or may write it (INSERT, UPDATE, TRIGGER, PUBLIC included)
// could rewrite the data itself (the session's role, a superuser, or a
// role with the privileges of every owner of the tables), when it has
// exactly rekey's shape (columns and primary key; no triggers, rules, row
// security, other constraints or indexes), and when this role may read and
// write it. Anything else is refused before a row is read
// ([ErrForeignCheckpoint]), naming the owner and the ALTER TABLE … OWNER
// TO or DROP TABLE that fixes it: a planted table can make a run refuse,
// never skip rows, and is never written to.
//
// # Count, Rehearse
//
// [Count] reads the columns in one REPEATABLE READ snapshot and counts,
// per column, the values each key opens, the ones none opens, and the
// NULL or empty ones: what `rekey reencrypt --verify` shows, and what says
// whether an old key still has rows (it must then be kept). [Rehearse]
// copies the database (CREATE DATABASE ... TEMPLATE when nobody else is
// connected to it; otherwise pg_dump -Fc piped into pg_restore, with the
// tools of the server's major version found in Job.PGBinDir,
// /usr/lib/postgresql/N/bin, PATH or the newest /usr/lib/postgresql/*/bin,
// the password in a 0600 passfile), runs the whole job on the copy,
// reports time, rows, failures and table growth (pg_total_relation_size
// before and after: every rewritten row leaves a dead version until
// VACUUM), and drops the copy, also on failure. The copy is made by the
// job's role (it needs CREATEDB: else [ErrNoCreateDB]) or through
// Job.AdminDSN, an admin connection to the same server. Job.Also are
// further keys values may be under (a pending or previous version): they
// open, and are re-encrypted, as the old key's values are.
package reencrypt
