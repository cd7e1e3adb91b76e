-- selfservice schema version 1 for PostgreSQL: users and registered clients.
--
-- Apply it with sqlstore.Migrate, or run this file as it is:
--
--	psql --single-transaction -f 0001_init.sql
--
-- It creates the tables in the first schema of the search_path and is
-- idempotent. Migrate also holds an advisory lock, so that processes
-- starting together do not race; plain runs of the file do not.

CREATE TABLE IF NOT EXISTS selfservice_schema_version (
	version    integer PRIMARY KEY,
	applied_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS selfservice_users (
	id              text PRIMARY KEY,
	-- As the user typed it, for display and mail; '' when the user has none.
	email           text NOT NULL DEFAULT '',
	-- The form uniqueness is decided on, compared byte for byte (the
	-- application canonicalises); NULL when the user has no address, since
	-- a unique constraint admits many NULLs.
	canonical_email text,
	CONSTRAINT selfservice_users_canonical_email_key UNIQUE (canonical_email)
);

CREATE TABLE IF NOT EXISTS selfservice_clients (
	id   text PRIMARY KEY,
	name text NOT NULL DEFAULT ''
);

INSERT INTO selfservice_schema_version (version) VALUES (1) ON CONFLICT DO NOTHING;
