-- 005: two group roles. sweep_writer is what the pipeline's login should belong to; sweep_analyst
-- can read every table and view and change nothing. Logins (with their passwords) are made at
-- set-up (`python -m training db add-user`), never here: no password lives in the repository.
-- Roles are cluster-wide, so creating them is guarded.

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'sweep_writer') THEN
        CREATE ROLE sweep_writer NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'sweep_analyst') THEN
        CREATE ROLE sweep_analyst NOLOGIN;
    END IF;
END
$$;

REVOKE CREATE ON SCHEMA public FROM PUBLIC;
REVOKE ALL ON SCHEMA analytics FROM PUBLIC;

GRANT USAGE ON SCHEMA public, analytics TO sweep_analyst, sweep_writer;
GRANT SELECT ON ALL TABLES IN SCHEMA public, analytics TO sweep_analyst, sweep_writer;
GRANT INSERT, UPDATE ON experiments, sweep_runs, attempts, evaluation_points TO sweep_writer;
GRANT DELETE ON evaluation_points, attempts TO sweep_writer;  -- a re-recorded experiment replaces them
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO sweep_writer;

-- Tables and views added by later migrations are readable by analysts without another grant.
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO sweep_analyst;
ALTER DEFAULT PRIVILEGES IN SCHEMA analytics GRANT SELECT ON TABLES TO sweep_analyst;
