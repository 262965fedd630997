-- Read-only role for Grafana's PostgreSQL datasource: SELECT on the ledger tables of this schema, nothing else.
--
-- The role is server-wide, the grants are per schema: several llmmeter schemas on one server share the role and
-- each migration grants its own schema. Creating the role is skipped (with a NOTICE) when it already exists or
-- when the collector's database user may not create roles; the grants are then applied if the role exists.
-- The role has no password here: set one with
--     ALTER ROLE llmmeter_grafana PASSWORD '...';
-- (or create the role yourself beforehand, e.g. from Postgres' docker-entrypoint-initdb.d, and this migration
-- only grants). Grafana reads the password from LLMMETER_GRAFANA_DB_PASSWORD (grafana/provisioning).
DO $grafana$
DECLARE
    may_create boolean;
    tbl text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'llmmeter_grafana') THEN
        SELECT rolsuper OR rolcreaterole INTO may_create FROM pg_roles WHERE rolname = current_user;
        IF may_create THEN
            BEGIN
                CREATE ROLE llmmeter_grafana LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT;
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;  -- created meanwhile by a migration of another schema
            END;
        ELSE
            RAISE NOTICE 'llmmeter: % may not create roles; create role llmmeter_grafana, then grant it SELECT on the llm_* tables', current_user;
        END IF;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'llmmeter_grafana') THEN
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO llmmeter_grafana', current_schema());
        -- the ledger and its rollups (and budget tables, when present); not API keys or other internals
        FOR tbl IN
            SELECT tablename FROM pg_tables
            WHERE schemaname = current_schema() AND (tablename LIKE 'llm\_%' OR tablename LIKE 'budget%')
        LOOP
            EXECUTE format('GRANT SELECT ON %I.%I TO llmmeter_grafana', current_schema(), tbl);
        END LOOP;
    END IF;
END
$grafana$;
