-- selfservice schema version 2 for PostgreSQL: the owner's alarm. After a
-- change of address the notice to the previous address and the undo of the
-- change are recorded in the transaction of the change itself, so that no
-- change commits without them; the courier leases the notices from here.
--
-- Apply it with sqlstore.Migrate, or run it after 0001_init.sql:
--
--	psql --single-transaction -f 0002_owner_alarm.sql
--
-- It is idempotent.
--
-- Times are bigint Unix milliseconds taken from the caller's now, never
-- from the database's clock: one query text then serves PostgreSQL and
-- SQLite (which has no time type), every replica judges expiry by the same
-- rule as the Service, and tests can run on a virtual clock.
--
-- The tables name users by id only, without a foreign key, so that an
-- application keeping its users in a table of its own records its changes
-- here too (sqlstore.Changes).

-- The user's language (BCP 47), set by the application: the notice of a
-- change is written in it, '' meaning every language of the bundle.
ALTER TABLE selfservice_users ADD COLUMN IF NOT EXISTS language text NOT NULL DEFAULT '';

-- Notices to previous addresses, kept until delivered or given up.
CREATE TABLE IF NOT EXISTS selfservice_notices (
	-- An identity is never reused, so that a courier whose lease ended
	-- cannot delete or retry a later notice under a recycled id.
	id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	user_id    text NOT NULL,
	-- The previous address, as typed.
	recipient  text NOT NULL,
	-- The new address, masked (n***@example.com).
	new_email  text NOT NULL,
	language   text NOT NULL DEFAULT '',
	changed_at bigint NOT NULL,
	-- The undo token, encrypted by the Service; NULL when there is none.
	sealed     bytea,
	-- Leases so far.
	attempts   integer NOT NULL DEFAULT 0,
	-- When the notice may next be leased: its recording, the end of its
	-- lease, or the time a retry set.
	due        bigint NOT NULL
);

-- Leasing takes the soonest due first: WHERE due <= now ORDER BY due, id.
CREATE INDEX IF NOT EXISTS selfservice_notices_due ON selfservice_notices (due, id);

-- Undo records: the keyed hash of a change's undo token and the address it
-- restores.
CREATE TABLE IF NOT EXISTS selfservice_undo_records (
	-- The order of the records, for "made after".
	seq            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	token_hash     bytea NOT NULL,
	user_id        text NOT NULL,
	prev_email     text NOT NULL,
	prev_canonical text NOT NULL,
	new_canonical  text NOT NULL,
	created_at     bigint NOT NULL,
	-- Live while now < expires_at.
	expires_at     bigint NOT NULL,
	state          text NOT NULL DEFAULT 'live',
	CONSTRAINT selfservice_undo_records_token_hash_key UNIQUE (token_hash),
	CONSTRAINT selfservice_undo_records_state_check CHECK (state IN ('live', 'used', 'void'))
);

-- An undo voids the user's records made after it; a change forgets the
-- user's dead ones.
CREATE INDEX IF NOT EXISTS selfservice_undo_records_user ON selfservice_undo_records (user_id, seq);

-- The cool-off an undo sets: no change of the user's address while
-- now < locked_until.
CREATE TABLE IF NOT EXISTS selfservice_change_locks (
	user_id      text PRIMARY KEY,
	locked_until bigint NOT NULL
);

INSERT INTO selfservice_schema_version (version) VALUES (2) ON CONFLICT DO NOTHING;
