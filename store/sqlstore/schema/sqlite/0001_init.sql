-- selfservice schema version 1 for SQLite: users and registered clients.
--
-- Apply it with sqlstore.Migrate, or run this file as it is:
--
--	sqlite3 app.db < 0001_init.sql
--
-- It is idempotent. Migrate also runs it inside BEGIN IMMEDIATE, so that
-- processes starting together do not race; plain runs of the file do not.

CREATE TABLE IF NOT EXISTS selfservice_schema_version (
	version    INTEGER PRIMARY KEY,
	applied_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE IF NOT EXISTS selfservice_users (
	id              TEXT NOT NULL PRIMARY KEY,
	-- As the user typed it, for display and mail; '' when the user has none.
	email           TEXT NOT NULL DEFAULT '',
	-- The form uniqueness is decided on, compared byte for byte (BINARY
	-- collation; the application canonicalises); NULL when the user has no
	-- address, since a UNIQUE constraint admits many NULLs.
	canonical_email TEXT UNIQUE
);

CREATE TABLE IF NOT EXISTS selfservice_clients (
	id   TEXT NOT NULL PRIMARY KEY,
	name TEXT NOT NULL DEFAULT ''
);

INSERT INTO selfservice_schema_version (version) VALUES (1) ON CONFLICT DO NOTHING;
