-- The audit trail as a Merkle log (docs/audit.md).
--
-- audit_hashes holds the RFC 6962 tree in golang.org/x/mod/sumdb/tlog's
-- stored-hash layout: id is tlog's stored-hash index, hash the 32-byte
-- SHA-256. The hashes of record seq are written in the same transaction as
-- the record, so the tree always has exactly one leaf per record.
CREATE TABLE audit_hashes (
    id   INTEGER NOT NULL PRIMARY KEY CHECK (id >= 0),
    hash BLOB    NOT NULL CHECK (length(hash) = 32)
) STRICT;

-- Signed checkpoints (C2SP tlog-checkpoint signed notes), one per tree
-- size, sizes only growing.
CREATE TABLE audit_checkpoints (
    size INTEGER NOT NULL PRIMARY KEY CHECK (size >= 0),
    time INTEGER NOT NULL,
    note BLOB    NOT NULL
) STRICT;

CREATE TRIGGER audit_hashes_gapless BEFORE INSERT ON audit_hashes
WHEN NEW.id IS NOT (SELECT COALESCE(MAX(id), -1) + 1 FROM audit_hashes)
BEGIN
    SELECT RAISE(ABORT, 'audit_hashes: id must be the next in sequence');
END;

CREATE TRIGGER audit_hashes_no_update BEFORE UPDATE ON audit_hashes
BEGIN
    SELECT RAISE(ABORT, 'audit_hashes is append-only');
END;

CREATE TRIGGER audit_hashes_no_delete BEFORE DELETE ON audit_hashes
BEGIN
    SELECT RAISE(ABORT, 'audit_hashes is append-only');
END;

CREATE TRIGGER audit_checkpoints_grow BEFORE INSERT ON audit_checkpoints
WHEN NEW.size <= (SELECT COALESCE(MAX(size), -1) FROM audit_checkpoints)
BEGIN
    SELECT RAISE(ABORT, 'audit_checkpoints: size must grow');
END;

CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'audit_checkpoints is append-only');
END;

CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'audit_checkpoints is append-only');
END;

-- The trust domain of the other side of the exchange (the caller's on the
-- provider side, the partner gateway's on the consumer side), for the Audit
-- service's partner filter. Records appended before this migration have ''.
ALTER TABLE audit_records ADD COLUMN partner TEXT NOT NULL DEFAULT '';

CREATE INDEX audit_records_by_partner ON audit_records (partner, seq);

-- Checkpoints of partners' logs this gateway accepted as a witness, per
-- origin, sizes only growing: the view a partner's later checkpoints must
-- extend.
CREATE TABLE audit_witnessed (
    origin TEXT    NOT NULL,
    size   INTEGER NOT NULL CHECK (size >= 0),
    time   INTEGER NOT NULL,
    note   BLOB    NOT NULL,
    PRIMARY KEY (origin, size)
) STRICT;

CREATE TRIGGER audit_witnessed_grow BEFORE INSERT ON audit_witnessed
WHEN NEW.size <= (SELECT COALESCE(MAX(size), -1) FROM audit_witnessed WHERE origin = NEW.origin)
BEGIN
    SELECT RAISE(ABORT, 'audit_witnessed: size must grow');
END;

CREATE TRIGGER audit_witnessed_no_update BEFORE UPDATE ON audit_witnessed
BEGIN
    SELECT RAISE(ABORT, 'audit_witnessed is append-only');
END;

CREATE TRIGGER audit_witnessed_no_delete BEFORE DELETE ON audit_witnessed
BEGIN
    SELECT RAISE(ABORT, 'audit_witnessed is append-only');
END;

-- Partners' witness cosignatures of our checkpoints (C2SP tlog-cosignature
-- signature lines), one per checkpoint size and witness.
CREATE TABLE audit_cosignatures (
    size    INTEGER NOT NULL,
    witness TEXT    NOT NULL,
    time    INTEGER NOT NULL,
    line    TEXT    NOT NULL,
    PRIMARY KEY (size, witness)
) STRICT;
