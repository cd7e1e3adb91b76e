-- selfservice schema version 2 for SQLite: the owner's alarm. After a
-- change of address the notice to the previous address and the undo of the
-- change are recorded in the transaction of the change itself, so that no
-- change commits without them; the courier leases the notices from here.
--
-- Apply it with sqlstore.Migrate, or run it once after 0001_init.sql:
--
--	sqlite3 app.db < 0002_owner_alarm.sql
--
-- It must run ONCE: SQLite's ALTER TABLE ... ADD COLUMN has no IF NOT
-- EXISTS, so a second run fails on the first statement ("duplicate column
-- name: language"). Migrate runs it only when the recorded version is below
-- 2, inside BEGIN IMMEDIATE. The rest of the file is idempotent.
--
-- Times are INTEGER Unix milliseconds taken from the caller's now, never
-- from the database's clock: one query text then serves SQLite (which has
-- no time type) and PostgreSQL, every process judges expiry by the same
-- rule as the Service, and tests can run on a virtual clock.
--
-- The tables name users by id only, without a foreign key, so that an
-- application keeping its users in a table of its own records its changes
-- here too (sqlstore.Changes).

-- The user's language (BCP 47), set by the application: the notice of a
-- change is written in it, '' meaning every language of the bundle.
ALTER TABLE selfservice_users ADD COLUMN language TEXT NOT NULL DEFAULT '';

-- Notices to previous addresses, kept until delivered or given up.
CREATE TABLE IF NOT EXISTS selfservice_notices (
	-- AUTOINCREMENT never reuses an id (a plain rowid may reuse the
	-- highest after a delete), so that a courier whose lease ended cannot
	-- delete or retry a later notice under a recycled id.
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	user_id    TEXT NOT NULL,
	-- The previous address, as typed.
	recipient  TEXT NOT NULL,
	-- The new address, masked (n***@example.com).
	new_email  TEXT NOT NULL,
	language   TEXT NOT NULL DEFAULT '',
	changed_at INTEGER NOT NULL,
	-- The undo token, encrypted by the Service; NULL when there is none.
	sealed     BLOB,
	-- Leases so far.
	attempts   INTEGER NOT NULL DEFAULT 0,
	-- When the notice may next be leased: its recording, the end of its
	-- lease, or the time a retry set.
	due        INTEGER NOT NULL
);

-- Leasing takes the soonest due first: WHERE due <= now ORDER BY due, id.
CREATE INDEX IF NOT EXISTS selfservice_notices_due ON selfservice_notices (due, id);

-- Undo records: the keyed hash of a change's undo token and the address it
-- restores.
CREATE TABLE IF NOT EXISTS selfservice_undo_records (
	-- The order of the records, for "made after": a new rowid is above
	-- every row present, which is all the order needs.
	seq            INTEGER PRIMARY KEY,
	token_hash     BLOB NOT NULL UNIQUE,
	user_id        TEXT NOT NULL,
	prev_email     TEXT NOT NULL,
	prev_canonical TEXT NOT NULL,
	new_canonical  TEXT NOT NULL,
	created_at     INTEGER NOT NULL,
	-- Live while now < expires_at.
	expires_at     INTEGER NOT NULL,
	state          TEXT NOT NULL DEFAULT 'live' CHECK (state IN ('live', 'used', 'void'))
);

-- An undo voids the user's records made after it; a change forgets the
-- user's dead ones.
CREATE INDEX IF NOT EXISTS selfservice_undo_records_user ON selfservice_undo_records (user_id, seq);

-- The cool-off an undo sets: no change of the user's address while
-- now < locked_until.
CREATE TABLE IF NOT EXISTS selfservice_change_locks (
	user_id      TEXT NOT NULL PRIMARY KEY,
	locked_until INTEGER NOT NULL
);

INSERT INTO selfservice_schema_version (version) VALUES (2) ON CONFLICT DO NOTHING;
