-- shopflow: one schema per service and one login role per service that can
-- use only its own schema (ARCHITECTURE.md: "no service reads another's
-- tables"). The postgres image runs this once, as the superuser, in the
-- database POSTGRES_DB (shopflow) when its data volume is first created;
-- 02-role-passwords.sh then sets the roles' passwords from the environment.
--
-- The script names no database: it applies to whichever one it runs in
-- (current_database()), and it is idempotent, because roles are
-- cluster-wide and the roles test (e2e/roles_test.go) runs it again and
-- again on one server, each time in a fresh database.
--
-- What each role gets:
--   * LOGIN, nothing else (no superuser, createdb, createrole, replication,
--     RLS bypass) and no membership in any other role;
--   * CONNECT on this database (PUBLIC loses CONNECT and TEMPORARY);
--   * ownership of its schema, so the service's migrations can create and
--     change its tables at start-up (pg.Connect finds the schema existing
--     and does not need CREATE on the database);
--   * search_path set to its schema in this database.
-- Nobody but the owner (and superusers) has any privilege on a service
-- schema, and PUBLIC may not create in schema public.

REVOKE ALL ON SCHEMA public FROM PUBLIC;

DO $roles$
DECLARE
    svc record;
BEGIN
    EXECUTE format('REVOKE ALL ON DATABASE %I FROM PUBLIC', current_database());

    FOR svc IN
        SELECT * FROM (VALUES
            ('order_svc',     'orders'),
            ('payment_svc',   'payments'),
            ('inventory_svc', 'inventory'),
            ('shipping_svc',  'shipping')
        ) AS t(role_name, schema_name)
    LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = svc.role_name) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I LOGIN', svc.role_name);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL; -- created meanwhile by a concurrent run of this script
            END;
        END IF;
        -- Also for a role that existed already: take away anything more.
        EXECUTE format('ALTER ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT',
            svc.role_name);

        EXECUTE format('CREATE SCHEMA IF NOT EXISTS %I AUTHORIZATION %I', svc.schema_name, svc.role_name);
        EXECUTE format('ALTER SCHEMA %I OWNER TO %I', svc.schema_name, svc.role_name);
        EXECUTE format('REVOKE ALL ON SCHEMA %I FROM PUBLIC', svc.schema_name);

        EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), svc.role_name);
        EXECUTE format('ALTER ROLE %I IN DATABASE %I SET search_path = %I',
            svc.role_name, current_database(), svc.schema_name);
    END LOOP;
END
$roles$;
