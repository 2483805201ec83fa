-- Declarations, risk assessments and the audit trail.
--
-- Each record is kept whole as deterministic protobuf bytes (record); the
-- other columns are copies of fields for filtering and ordering only and are
-- rewritten from the record on every upsert. Times are unix nanoseconds (UTC).

CREATE TABLE declarations (
    id                  TEXT    NOT NULL PRIMARY KEY,
    acceptance_time     INTEGER NOT NULL,
    export_country      TEXT    NOT NULL,
    destination_country TEXT    NOT NULL,
    record              BLOB    NOT NULL
) STRICT;

-- Search order is (acceptance_time DESC, id ASC); these indexes let SQLite
-- walk that order without a temporary sort, with or without a country filter.
CREATE INDEX declarations_by_acceptance  ON declarations (acceptance_time DESC, id);
CREATE INDEX declarations_by_export      ON declarations (export_country, acceptance_time DESC, id);
CREATE INDEX declarations_by_destination ON declarations (destination_country, acceptance_time DESC, id);

-- One row per distinct HS chapter (first two characters of hs_code) among a
-- declaration's goods items.
CREATE TABLE declaration_hs_chapters (
    declaration_id TEXT NOT NULL REFERENCES declarations (id) ON DELETE CASCADE,
    chapter        TEXT NOT NULL,
    PRIMARY KEY (declaration_id, chapter)
) STRICT, WITHOUT ROWID;

CREATE INDEX declaration_hs_chapters_by_chapter ON declaration_hs_chapters (chapter, declaration_id);

-- No foreign key to declarations: a risk assessment received from a partner
-- may concern a declaration only the partner holds.
CREATE TABLE risk_assessments (
    id             TEXT NOT NULL PRIMARY KEY,
    declaration_id TEXT NOT NULL,
    record         BLOB NOT NULL
) STRICT;

CREATE INDEX risk_assessments_by_declaration ON risk_assessments (declaration_id);

CREATE TABLE audit_records (
    seq          INTEGER NOT NULL PRIMARY KEY CHECK (seq > 0),
    time         INTEGER NOT NULL,
    request_id   TEXT    NOT NULL,
    side         INTEGER NOT NULL,
    decision     INTEGER NOT NULL,
    caller_id    TEXT    NOT NULL,
    action       TEXT    NOT NULL,
    agreement_id TEXT    NOT NULL,
    record       BLOB    NOT NULL
) STRICT;

CREATE INDEX audit_records_by_request ON audit_records (request_id, seq);
CREATE INDEX audit_records_by_time    ON audit_records (time, seq);

-- The Go API has no update or delete; these triggers keep the trail
-- append-only and gapless against any other writer of the file as well
-- (a bug, a second process, an operator with the sqlite3 shell).
CREATE TRIGGER audit_records_gapless BEFORE INSERT ON audit_records
WHEN NEW.seq IS NOT (SELECT COALESCE(MAX(seq), 0) + 1 FROM audit_records)
BEGIN
    SELECT RAISE(ABORT, 'audit_records: seq must be the next in sequence');
END;

CREATE TRIGGER audit_records_no_update BEFORE UPDATE ON audit_records
BEGIN
    SELECT RAISE(ABORT, 'audit_records is append-only');
END;

CREATE TRIGGER audit_records_no_delete BEFORE DELETE ON audit_records
BEGIN
    SELECT RAISE(ABORT, 'audit_records is append-only');
END;
