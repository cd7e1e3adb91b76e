-- selfservice schema version 3 for PostgreSQL: a client may name the
-- OpenID provider its users sign in with (store.Client.Issuer and JWKSURL),
-- for a deployment whose applications sign in through different issuers
-- (idtoken.Issuers). '' in both: the Service's one Verifier.
--
-- Apply it with sqlstore.Migrate, or run it after 0002_owner_alarm.sql:
--
--	psql --single-transaction -f 0003_client_issuers.sql
--
-- It is idempotent.

ALTER TABLE selfservice_clients ADD COLUMN IF NOT EXISTS issuer text NOT NULL DEFAULT '';
ALTER TABLE selfservice_clients ADD COLUMN IF NOT EXISTS jwks_url text NOT NULL DEFAULT '';

-- Both or neither (store.Client's contract): half a registration is
-- refused by the database too, not only by the verifier that reads it.
-- PostgreSQL has no ADD CONSTRAINT IF NOT EXISTS; a second run meets
-- duplicate_object and keeps the first.
DO $$
BEGIN
	ALTER TABLE selfservice_clients ADD CONSTRAINT selfservice_clients_issuer_check
		CHECK ((issuer = '') = (jwks_url = ''));
EXCEPTION WHEN duplicate_object THEN
	NULL;
END
$$;

INSERT INTO selfservice_schema_version (version) VALUES (3) ON CONFLICT DO NOTHING;
