-- App objects: which top-level fields of a collection are indexed in object_fields (issue #4).
-- A field is indexed from the first `where` or `sort` naming it (the rows of the objects already
-- stored are written then); from then on every create, update and delete keeps its rows. Fields
-- never queried cost nothing on writes. See docs/objects-api.md, "Storage and indexes".
CREATE TABLE object_indexes (
    cid  INTEGER NOT NULL REFERENCES object_collections(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    PRIMARY KEY (cid, name)
) WITHOUT ROWID;
-- Stores written before this migration indexed every field: keep what they have.
INSERT INTO object_indexes (cid, name) SELECT DISTINCT cid, name FROM object_fields;
