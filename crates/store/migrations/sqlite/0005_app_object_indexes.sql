-- Shared app collections (`/classes/app/…`) are filtered and sorted only on the fields the app's
-- operator declares (issue #10): `indexes` is the declaration, a JSON object of collection name
-- to field names ({"Tracks":["genre","rank"]}), applying to every shared collection of that name.
-- The store keeps exactly the declared fields indexed in the app's shared collections.
-- See docs/objects-api.md, "Indexes".
ALTER TABLE apps ADD COLUMN indexes TEXT NOT NULL DEFAULT '{}';
-- Before this migration any user indexed any field of a shared collection on first use. No field
-- is declared yet, so those indexes can no longer serve a read: drop them (an operator's
-- declaration builds them again, the objects already stored included).
DELETE FROM object_fields WHERE cid IN (SELECT id FROM object_collections WHERE owner = 0);
DELETE FROM object_indexes WHERE cid IN (SELECT id FROM object_collections WHERE owner = 0);
