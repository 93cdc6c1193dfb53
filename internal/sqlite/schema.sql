CREATE TABLE meta (
	k TEXT PRIMARY KEY,
	v BLOB NOT NULL
) WITHOUT ROWID;

-- A secret's head: everything about it that changes, authenticated by mac
-- (auth.go). Version rows never change once written.
CREATE TABLE secret (
	id     INTEGER PRIMARY KEY,
	env    TEXT NOT NULL,
	name   TEXT NOT NULL,
	-- the highest version number ever given, so a pruned number is never reused
	-- (audit records name versions by number)
	last_n INTEGER NOT NULL DEFAULT 0,
	-- the version holding each label (0: none)
	cur    INTEGER NOT NULL DEFAULT 0,
	pend   INTEGER NOT NULL DEFAULT 0,
	prev   INTEGER NOT NULL DEFAULT 0,
	-- the version numbers that exist, as ranges: "1-3,5"
	vset   TEXT NOT NULL DEFAULT '',
	-- non-secret version attributes, e.g. the role of an alternating password
	attrs  TEXT NOT NULL DEFAULT '',
	mac    BLOB NOT NULL,
	UNIQUE (env, name)
);

CREATE TABLE version (
	secret_id   INTEGER NOT NULL REFERENCES secret (id),
	n           INTEGER NOT NULL,
	created_at  INTEGER NOT NULL,
	fingerprint TEXT NOT NULL,
	source      BLOB NOT NULL, -- a small integer (compact.go) or text
	rotation_id TEXT NOT NULL DEFAULT '',
	note        TEXT NOT NULL DEFAULT '',
	sealed      BLOB NOT NULL,
	mac         BLOB NOT NULL,
	PRIMARY KEY (secret_id, n)
) WITHOUT ROWID;

CREATE TABLE rotation (
	id      TEXT PRIMARY KEY,
	env     TEXT NOT NULL,
	mode    TEXT NOT NULL,
	state   TEXT NOT NULL,
	actor   TEXT NOT NULL,
	started INTEGER NOT NULL,
	ended   INTEGER NOT NULL DEFAULT 0,
	secrets TEXT NOT NULL,
	steps   TEXT NOT NULL,
	error   TEXT NOT NULL DEFAULT '',
	mac     BLOB NOT NULL
);

CREATE INDEX rotation_env ON rotation (env, started);

CREATE TABLE audit (
	seq         INTEGER PRIMARY KEY,
	time        INTEGER NOT NULL,
	actor       TEXT NOT NULL,
	action      TEXT NOT NULL,
	env         TEXT NOT NULL,
	secret      TEXT NOT NULL,
	version     INTEGER NOT NULL,
	fingerprint TEXT NOT NULL,
	outcome     TEXT NOT NULL,
	detail      TEXT NOT NULL,
	-- HMAC-SHA256 under the audit key over the previous entry's hash and this
	-- entry's fields; the previous hash is not stored again (it is the row before).
	hash        BLOB NOT NULL
);

-- Older audit entries, packed auditBlock at a time (see audit.go): deflated
-- fields with a 4-byte hash tag each, the full hash of the last entry, and an
-- HMAC of the packed bytes themselves.
CREATE TABLE audit_block (
	first INTEGER PRIMARY KEY,
	last  INTEGER NOT NULL,
	data  BLOB NOT NULL,
	hash  BLOB NOT NULL,
	mac   BLOB NOT NULL
);

-- Since issue 15 (incidents and the notification outbox): also created on
-- open in a store made before (ensureIncidentTables, from this part of the
-- file, which is why each statement is IF NOT EXISTS). Each row has a MAC
-- over its id and every column (tx_incidents.go, tx_outbox.go).
CREATE TABLE IF NOT EXISTS incident (
	id     TEXT PRIMARY KEY,
	env    TEXT NOT NULL,
	state  TEXT NOT NULL,
	opened INTEGER NOT NULL, -- unix nanoseconds
	doc    TEXT NOT NULL,    -- the rekey.Incident as JSON (no value)
	mac    BLOB NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS outbox (
	id         INTEGER PRIMARY KEY,
	created    INTEGER NOT NULL, -- unix nanoseconds
	env        TEXT NOT NULL,
	channel    TEXT NOT NULL,
	event      TEXT NOT NULL,
	idem       TEXT NOT NULL UNIQUE,
	body       BLOB NOT NULL,    -- the message JSON (no value)
	attempts   INTEGER NOT NULL DEFAULT 0,
	next_at    INTEGER NOT NULL, -- unix nanoseconds
	delivered  INTEGER NOT NULL DEFAULT 0, -- 0: pending
	last_error TEXT NOT NULL DEFAULT '',
	mac        BLOB NOT NULL
);
