-- Push delivery (outbox, inbox) and the commit order subscriptions follow.
--
-- Times are unix nanoseconds (UTC).

-- One row per (alert, recipient). alert holds the deterministic bytes of the
-- borderlink.v1.Alert to send, released under the recipient's grant when it
-- was published. seq is the creation order: each recipient's entries are
-- delivered in seq order per origin record.
CREATE TABLE outbox (
    seq          INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    message_id   TEXT    NOT NULL UNIQUE,
    recipient    TEXT    NOT NULL,
    record_id    TEXT    NOT NULL,
    agreement_id TEXT    NOT NULL,
    grant_id     TEXT    NOT NULL,
    alert        BLOB    NOT NULL,
    -- The whole record as published (deterministic encoding), so that each
    -- attempt can decide and release exactly that version again.
    record       BLOB    NOT NULL DEFAULT x'',
    -- 1 pending, 2 delivered, 3 refused, 4 cancelled (OutboxState).
    state        INTEGER NOT NULL CHECK (state BETWEEN 1 AND 4),
    attempts     INTEGER NOT NULL DEFAULT 0,
    created      INTEGER NOT NULL,
    next_attempt INTEGER NOT NULL,
    last_error   TEXT    NOT NULL DEFAULT '',
    receipt      TEXT    NOT NULL DEFAULT '',
    -- seq of the audit record of the delivery or refusal (0: none yet).
    audit_seq    INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE INDEX outbox_by_state ON outbox (recipient, state, seq);

-- Alerts received, keyed by the sender and its message ID: a redelivery
-- finds its row and is answered from it. content_sha256 is the digest of the
-- alert as first received: the same ID with other content is a conflict.
-- alert is NULL once the retention period of the sender's obligations ended.
CREATE TABLE inbox (
    sender         TEXT    NOT NULL,
    message_id     TEXT    NOT NULL,
    content_sha256 TEXT    NOT NULL,
    record_id      TEXT    NOT NULL,
    agreement_id   TEXT    NOT NULL,
    obligations    TEXT    NOT NULL,
    received       INTEGER NOT NULL,
    retain_until   INTEGER NOT NULL,
    audit_seq      INTEGER NOT NULL,
    alert          BLOB,
    PRIMARY KEY (sender, message_id)
) STRICT;

CREATE INDEX inbox_by_retention ON inbox (retain_until) WHERE alert IS NOT NULL;

-- Onward sharing looks received alerts up by the record they carry.
CREATE INDEX inbox_by_record ON inbox (record_id, received);

-- The commit order of records, for Exchange.Subscribe: every upsert moves
-- the record to the end (its older position is deleted), so a subscriber
-- sees each record once per change, in commit order.
CREATE TABLE record_changes (
    seq         INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    record_type TEXT    NOT NULL CHECK (record_type IN ('declaration', 'risk_assessment')),
    record_id   TEXT    NOT NULL,
    UNIQUE (record_type, record_id)
) STRICT;

-- Records stored before this migration enter the order once, in id order.
INSERT INTO record_changes (record_type, record_id) SELECT 'declaration', id FROM declarations ORDER BY id;
INSERT INTO record_changes (record_type, record_id) SELECT 'risk_assessment', id FROM risk_assessments ORDER BY id;
