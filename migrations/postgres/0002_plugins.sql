-- Plugins loaded through the admin API or from the plugin directory: the database is the
-- source of truth every replica converges to.
CREATE TABLE plugins (
    name        TEXT PRIMARY KEY,
    version     TEXT NOT NULL,
    kind        TEXT NOT NULL,
    manifest    TEXT NOT NULL,
    component   BYTEA NOT NULL,
    sha256      TEXT NOT NULL,
    updated_at  BIGINT NOT NULL
);
