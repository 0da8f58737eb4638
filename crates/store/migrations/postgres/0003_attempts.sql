-- Failed login and activation attempts, counted for every node at once (issue #13): the rate
-- limits hold across nodes because the database keeps the count. `limit_keys` has one row per
-- limited key (an account or a client address), locked while an attempt is reserved on it, so
-- concurrent reservations on one key take turns (portable row locks, no advisory locks).
CREATE TABLE limit_keys (
    key     TEXT COLLATE "C" PRIMARY KEY,
    last_ms BIGINT NOT NULL
);
-- One row per attempt still counted on a key; an attempt on several keys shares its id.
CREATE TABLE limit_attempts (
    key   TEXT COLLATE "C" NOT NULL,
    id    BIGINT NOT NULL,
    at_ms BIGINT NOT NULL,
    PRIMARY KEY (key, id)
);
CREATE INDEX limit_attempts_id ON limit_attempts (id);
CREATE SEQUENCE limit_attempt_ids;
