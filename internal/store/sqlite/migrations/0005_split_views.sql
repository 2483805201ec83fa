-- Evidence of split views of partners' audit logs (docs/audit.md,
-- Witnessing): two checkpoints of one log, both signed by it, that no
-- append-only tree can both describe. Times are unix nanoseconds (UTC).
--
-- accepted_note is the checkpoint this gateway accepted from the partner
-- itself, conflicting_note the one that contradicts it, both exactly as
-- received (signature and cosignature lines included), so that an auditor
-- can check the partner's signature on each with its published key.
-- detection is how it was found: 'direct' (the partner later showed this
-- gateway the conflicting checkpoint) or 'gossip' (witness, another
-- gateway, was shown it and gossiped it).
--
-- One row per pair of trees: (origin, sizes, roots). The note bytes are not
-- part of the key, because the same signed checkpoint arrives with varying
-- cosignature lines (each witness adds one, a restarted witness gossips
-- without its own) and a forking gateway could otherwise grow this table
-- without bound by varying them. Re-detection bumps count and last_seen;
-- the notes and detection of the first sighting are kept.
CREATE TABLE audit_split_views (
    id               INTEGER NOT NULL PRIMARY KEY,
    origin           TEXT    NOT NULL,
    accepted_size    INTEGER NOT NULL CHECK (accepted_size >= 0),
    accepted_root    BLOB    NOT NULL CHECK (length(accepted_root) = 32),
    accepted_note    BLOB    NOT NULL,
    conflicting_size INTEGER NOT NULL CHECK (conflicting_size >= 0),
    conflicting_root BLOB    NOT NULL CHECK (length(conflicting_root) = 32),
    conflicting_note BLOB    NOT NULL,
    reason           TEXT    NOT NULL,
    detection        TEXT    NOT NULL CHECK (detection IN ('direct', 'gossip')),
    witness          TEXT    NOT NULL DEFAULT '' CHECK ((detection = 'gossip') = (witness <> '')),
    first_seen       INTEGER NOT NULL,
    last_seen        INTEGER NOT NULL,
    count            INTEGER NOT NULL DEFAULT 1 CHECK (count >= 1),
    UNIQUE (origin, accepted_size, accepted_root, conflicting_size, conflicting_root)
) STRICT;

-- Evidence is never taken back: only count and last_seen change.
CREATE TRIGGER audit_split_views_keep_evidence BEFORE UPDATE OF
    id, origin, accepted_size, accepted_root, accepted_note, conflicting_size, conflicting_root,
    conflicting_note, reason, detection, witness, first_seen ON audit_split_views
BEGIN
    SELECT RAISE(ABORT, 'audit_split_views: evidence is kept as first seen');
END;

CREATE TRIGGER audit_split_views_no_delete BEFORE DELETE ON audit_split_views
BEGIN
    SELECT RAISE(ABORT, 'audit_split_views: evidence is never deleted');
END;
