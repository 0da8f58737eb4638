-- App users (scoped per app), their sessions, linked things, grants, settings, and the outbox of
-- notification emails (issue #3). Deleting an app removes its users and, through them, their
-- sessions, links and grants; deleting a thing removes the links and grants that name it.
-- AUTOINCREMENT: a user id is never given again, so nothing keyed by it (private object
-- collections, notifier topics) can pass to a later user.
CREATE TABLE app_users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id        TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    email         TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    settings      TEXT NOT NULL DEFAULT '{}',
    created_ms    INTEGER NOT NULL,
    UNIQUE (app_id, email)
);
CREATE TABLE app_sessions (
    token_digest TEXT PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES app_users(id) ON DELETE CASCADE,
    expires_ms   INTEGER NOT NULL,
    created_ms   INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX app_sessions_user ON app_sessions(user_id);
CREATE TABLE app_links (
    user_id    INTEGER NOT NULL REFERENCES app_users(id) ON DELETE CASCADE,
    thing_id   TEXT NOT NULL REFERENCES things(id) ON DELETE CASCADE,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (user_id, thing_id)
) WITHOUT ROWID;
CREATE INDEX app_links_thing ON app_links(thing_id);
-- perms: bit set, get=1 post=2 grant=4 put=8 delete=16.
CREATE TABLE app_grants (
    user_id    INTEGER NOT NULL REFERENCES app_users(id) ON DELETE CASCADE,
    thing_id   TEXT NOT NULL REFERENCES things(id) ON DELETE CASCADE,
    key        TEXT NOT NULL,
    perms      INTEGER NOT NULL,
    granted_by INTEGER NOT NULL REFERENCES app_users(id) ON DELETE CASCADE,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (user_id, thing_id, key)
) WITHOUT ROWID;
CREATE INDEX app_grants_thing ON app_grants(thing_id);
CREATE INDEX app_grants_granter ON app_grants(granted_by, thing_id);
CREATE TABLE app_outbox (
    id         INTEGER PRIMARY KEY,
    app_id     TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    to_email   TEXT NOT NULL,
    subject    TEXT NOT NULL,
    body       TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE INDEX app_outbox_app ON app_outbox(app_id, id);
