-- The web panel (issue 14): the things table of a product, paged and sorted by activation, id or
-- name with 100,000 things in one product, and the last login of app users.
--
-- things.name is `$settings.name` when that is a string (NULL otherwise, and for a name holding
-- U+0000, which PostgreSQL's text cannot hold): the store writes it with every settings write,
-- from the document it writes, so sorting and searching by name read a plain column (no JSON
-- parsed per row). Each order of the table is one index range, with seq (the rowid every index
-- ends with) as the tiebreak: by activation things_product (product_id) already is one; by id
-- and by name the two below. `name IS NULL` leads the name index so that nameless things come
-- after the named ones in ascending order, the order PostgreSQL's index gives. The id index
-- also holds the name, so that a search (id prefix or name) reads that index alone.
ALTER TABLE things ADD COLUMN name TEXT;
-- The documents written so far (a name whose JSON text holds the escape \u0000 is left out: SQL
-- functions stop at a NUL character).
UPDATE things SET name = json_extract(settings, '$.name')
    WHERE json_type(settings, '$.name') = 'text' AND instr(settings -> '$.name', '\u0000') = 0;
CREATE INDEX things_product_id ON things(product_id, id, name);
CREATE INDEX things_product_name ON things(product_id, name IS NULL, name);
-- When the user last got a session (register or login); sessions are deleted at logout, so the
-- time is kept with the user. Live sessions tell it for the users they belong to.
ALTER TABLE app_users ADD COLUMN last_login_ms INTEGER;
UPDATE app_users SET last_login_ms = (SELECT max(created_ms) FROM app_sessions s WHERE s.user_id = app_users.id);
