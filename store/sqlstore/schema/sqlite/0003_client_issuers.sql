-- selfservice schema version 3 for SQLite: a client may name the OpenID
-- provider its users sign in with (store.Client.Issuer and JWKSURL), for a
-- deployment whose applications sign in through different issuers
-- (idtoken.Issuers). '' in both: the Service's one Verifier.
--
-- Apply it with sqlstore.Migrate, or run it once after 0002_owner_alarm.sql:
--
--	sqlite3 app.db < 0003_client_issuers.sql
--
-- It must run ONCE: SQLite's ALTER TABLE ... ADD COLUMN has no IF NOT
-- EXISTS, so a second run fails on the first statement ("duplicate column
-- name: issuer"). Migrate runs it only when the recorded version is below
-- 3, inside BEGIN IMMEDIATE.

ALTER TABLE selfservice_clients ADD COLUMN issuer TEXT NOT NULL DEFAULT '';
-- Both or neither (store.Client's contract): half a registration is
-- refused by the database too, not only by the verifier that reads it.
-- SQLite adds a table constraint only by rebuilding the table; a column's
-- CHECK may name another column.
ALTER TABLE selfservice_clients ADD COLUMN jwks_url TEXT NOT NULL DEFAULT ''
	CHECK ((issuer = '') = (jwks_url = ''));

INSERT INTO selfservice_schema_version (version) VALUES (3) ON CONFLICT DO NOTHING;
