-- The web panel (issue 14), the PostgreSQL twin of the SQLite migration 0006: the things table of
-- a product, paged and sorted by activation, id or name with 100,000 things in one product, and
-- the last login of app users.
--
-- things.name is `$settings.name` when that is a string (NULL otherwise, and for a name holding
-- U+0000, which text cannot hold): the store writes it with every settings write, from the
-- document it writes, so sorting and searching by name read a plain column (no JSON parsed per
-- row, and no index expression that could fail on a stored document). Each order of the table is
-- one range of an index that also holds seq (the tiebreak and what a page selects, from the index
-- alone); the name index holds id too, so that a search (id prefix or name) reads only it.
-- Ascending, NULL names sort last (PostgreSQL's default), descending first.
ALTER TABLE things ADD COLUMN name TEXT COLLATE "C";
-- The documents written so far: PostgreSQL's json parser refuses the escape \u0000 anywhere in a
-- document, so a document holding one (an odd number of backslashes before u0000) is left
-- without a name until its next settings write.
-- (CASE, not AND: only CASE fixes the order in which the conditions are evaluated.)
UPDATE things SET name = CASE
        WHEN settings ~ '(^|[^\\])(\\\\)*\\u0000' THEN NULL
        WHEN json_typeof(settings::json -> 'name') = 'string' THEN settings::json ->> 'name'
    END
    WHERE strpos(settings, '"name"') > 0;
CREATE INDEX things_product_seq ON things (product_id, seq);
CREATE INDEX things_product_id ON things (product_id, id COLLATE "C", seq);
CREATE INDEX things_product_name ON things (product_id, name, seq, id);
-- things_product_seq serves everything things_product (product_id) did.
DROP INDEX things_product;
-- When the user last got a session (register or login); sessions are deleted at logout, so the
-- time is kept with the user. Live sessions tell it for the users they belong to.
ALTER TABLE app_users ADD COLUMN last_login_ms BIGINT;
UPDATE app_users u SET last_login_ms = (SELECT max(created_ms) FROM app_sessions s WHERE s.user_id = u.id);
