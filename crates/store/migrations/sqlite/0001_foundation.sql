-- Panel accounts, products, activation codes, apps, things and timelines.
CREATE TABLE panel_users (
    id            INTEGER PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_ms    INTEGER NOT NULL
);
CREATE TABLE panel_sessions (
    token_digest TEXT PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES panel_users(id) ON DELETE CASCADE,
    expires_ms   INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE products (
    id         TEXT PRIMARY KEY,
    owner_id   INTEGER NOT NULL REFERENCES panel_users(id),
    name       TEXT NOT NULL,
    resources  TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE INDEX products_owner ON products(owner_id);
CREATE TABLE activation_codes (
    code       TEXT PRIMARY KEY,
    product_id TEXT NOT NULL REFERENCES products(id) ON DELETE CASCADE,
    thing_id   TEXT,
    created_ms INTEGER NOT NULL,
    used_ms    INTEGER
) WITHOUT ROWID;
CREATE INDEX activation_codes_product ON activation_codes(product_id);
CREATE TABLE apps (
    id         TEXT PRIMARY KEY,
    owner_id   INTEGER NOT NULL REFERENCES panel_users(id),
    name       TEXT NOT NULL,
    resources  TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE INDEX apps_owner ON apps(owner_id);
CREATE TABLE things (
    -- AUTOINCREMENT: a deleted thing's seq is never reused (caches and topics are keyed by it).
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              TEXT NOT NULL UNIQUE,
    token           TEXT NOT NULL UNIQUE,
    product_id      TEXT NOT NULL REFERENCES products(id),
    activation_code TEXT,
    settings        TEXT NOT NULL DEFAULT '{}',
    created_ms      INTEGER NOT NULL
);
CREATE INDEX things_product ON things(product_id);
CREATE TABLE timelines (
    id        INTEGER PRIMARY KEY,
    thing_seq INTEGER NOT NULL REFERENCES things(seq) ON DELETE CASCADE,
    key       TEXT NOT NULL,
    UNIQUE (thing_seq, key)
);
-- One row per value; (timeline, datetime) is unique, which keeps paging by endDate exact.
CREATE TABLE points (
    timeline_id INTEGER NOT NULL,
    ts          INTEGER NOT NULL,
    value       TEXT NOT NULL,
    PRIMARY KEY (timeline_id, ts)
) WITHOUT ROWID;
