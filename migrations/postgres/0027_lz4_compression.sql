-- PostgreSQL compresses a row's long values before it stores a row past about 2 KB: a
-- decision's answer and most audit records. Its default method, pglz, took 14% of the
-- database's CPU under `scripts/bench-http` (BENCHMARKS.md, 2026-12-06). lz4 makes these values
-- as small (1,331 against 1,335 bytes an answer, 1,277 against 1,276 a record) in a fraction of
-- the time. Values already stored keep their method; nothing is rewritten. A server without
-- lz4 (built without it, or older than PostgreSQL 14) keeps pglz: the change is skipped there,
-- not failed, which is why the statements are strings run by `EXECUTE`.
DO $$
BEGIN
    EXECUTE 'ALTER TABLE decisions ALTER COLUMN request SET COMPRESSION lz4, '
        'ALTER COLUMN answer SET COMPRESSION lz4';
    EXECUTE 'ALTER TABLE audit_events ALTER COLUMN record SET COMPRESSION lz4';
EXCEPTION WHEN feature_not_supported OR syntax_error THEN
    RAISE NOTICE 'lz4 compression is not available here: keeping pglz (%)', SQLERRM;
END
$$;
