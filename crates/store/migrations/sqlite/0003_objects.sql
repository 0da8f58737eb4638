-- App objects (issue #4). See docs/objects-api.md, "Storage and indexes".
-- One row per collection: (app, owner, path); owner 0 = shared by the users of the app.
-- AUTOINCREMENT: a collection id is never given again (the objects writer caches ids).
CREATE TABLE object_collections (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    owner  INTEGER NOT NULL,
    path   TEXT NOT NULL,
    UNIQUE (app_id, owner, path)
);
-- One row per object, clustered by (collection, sortable _id): a get is one b-tree search and a
-- page of a collection is one contiguous range. body: JSON text with _id first.
CREATE TABLE objects (
    cid  INTEGER NOT NULL REFERENCES object_collections(id) ON DELETE CASCADE,
    k    TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (cid, k)
) WITHOUT ROWID;
-- Top-level scalar fields of every object: equality filters are a range on (cid, name, v) already
-- ordered by k, sorting by a field is a range on (cid, name) ordered by (v, k). `v` has no type
-- (no affinity): integers/reals compare numerically, text by bytes; null, false and true are the
-- blobs x'00', x'01', x'02' so they never equal a number or a string.
CREATE TABLE object_fields (
    cid  INTEGER NOT NULL REFERENCES object_collections(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    v    NOT NULL,
    k    TEXT NOT NULL,
    PRIMARY KEY (cid, name, v, k)
) WITHOUT ROWID;
