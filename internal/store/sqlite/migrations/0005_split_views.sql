-- Evidence of split views of partners' audit logs (docs/audit.md,
-- Witnessing and Split-view evidence): two checkpoints of one log, both
-- signed by it, that no append-only tree can both describe. Times are unix
-- nanoseconds (UTC).
--
-- One row per incident: (origin, detection, witness). detection is how it
-- was found: 'direct' (the partner itself showed this gateway a checkpoint
-- that contradicts the one it accepted from it; witness is '') or 'gossip'
-- (witness, another gateway, was shown the conflicting checkpoint and
-- gossiped it). So a partner log has at most one row for direct detection
-- and one per gossiping witness, however long its fork lasts.
--
-- A pair of trees is not the key: while a fork lasts both sides move (in
-- direct detection the partner's conflicting checkpoint grows every round,
-- in gossip detection both branches do), and the same signed checkpoint
-- arrives with varying cosignature lines, so any key made of sizes, roots
-- or note bytes grows by a row per witnessing round. Nor does a later fork
-- of the same log start a new row: telling two forks apart needs
-- consistency proofs the store does not have, and a forking partner that
-- alternates between branches would make every such key new again. Once a
-- partner is caught, its log is untrusted as a whole; what it does next is
-- recorded in the latest pair, count and last_seen.
--
-- The first pair (accepted_*, conflicting_*, reason) is the evidence of the
-- first detection and is never rewritten. The latest pair (latest_*) is
-- that of the latest detection (at last_seen); it starts as the first pair
-- and is replaced by every later detection that is not older than
-- last_seen. Notes are exactly as received (signature and cosignature
-- lines included), so that an auditor can check the partner's signature
-- on each with its published key. accepted is the checkpoint this gateway
-- accepted from the partner itself, conflicting the one that contradicts it.
CREATE TABLE audit_split_views (
    id                      INTEGER NOT NULL PRIMARY KEY,
    origin                  TEXT    NOT NULL,
    detection               TEXT    NOT NULL CHECK (detection IN ('direct', 'gossip')),
    witness                 TEXT    NOT NULL DEFAULT '' CHECK ((detection = 'gossip') = (witness <> '')),
    -- The first detection's pair: immutable.
    accepted_size           INTEGER NOT NULL CHECK (accepted_size >= 0),
    accepted_root           BLOB    NOT NULL CHECK (length(accepted_root) = 32),
    accepted_note           BLOB    NOT NULL,
    conflicting_size        INTEGER NOT NULL CHECK (conflicting_size >= 0),
    conflicting_root        BLOB    NOT NULL CHECK (length(conflicting_root) = 32),
    conflicting_note        BLOB    NOT NULL,
    reason                  TEXT    NOT NULL,
    -- The latest detection's pair (at last_seen).
    latest_accepted_size    INTEGER NOT NULL CHECK (latest_accepted_size >= 0),
    latest_accepted_root    BLOB    NOT NULL CHECK (length(latest_accepted_root) = 32),
    latest_accepted_note    BLOB    NOT NULL,
    latest_conflicting_size INTEGER NOT NULL CHECK (latest_conflicting_size >= 0),
    latest_conflicting_root BLOB    NOT NULL CHECK (length(latest_conflicting_root) = 32),
    latest_conflicting_note BLOB    NOT NULL,
    latest_reason           TEXT    NOT NULL,
    first_seen              INTEGER NOT NULL,
    last_seen               INTEGER NOT NULL CHECK (last_seen >= first_seen),
    count                   INTEGER NOT NULL DEFAULT 1 CHECK (count >= 1),
    CHECK (accepted_size <> conflicting_size OR accepted_root <> conflicting_root),
    CHECK (latest_accepted_size <> latest_conflicting_size OR latest_accepted_root <> latest_conflicting_root),
    UNIQUE (origin, detection, witness)
) STRICT;

-- Evidence is never taken back: only count, last_seen and the latest pair
-- change, and count and last_seen only grow.
CREATE TRIGGER audit_split_views_keep_evidence BEFORE UPDATE OF
    id, origin, detection, witness, accepted_size, accepted_root, accepted_note,
    conflicting_size, conflicting_root, conflicting_note, reason, first_seen ON audit_split_views
BEGIN
    SELECT RAISE(ABORT, 'audit_split_views: the first evidence is kept as first seen');
END;

CREATE TRIGGER audit_split_views_only_grow BEFORE UPDATE OF count, last_seen ON audit_split_views
WHEN NEW.count < OLD.count OR NEW.last_seen < OLD.last_seen
BEGIN
    SELECT RAISE(ABORT, 'audit_split_views: count and last_seen only grow');
END;

CREATE TRIGGER audit_split_views_no_delete BEFORE DELETE ON audit_split_views
BEGIN
    SELECT RAISE(ABORT, 'audit_split_views: evidence is never deleted');
END;
