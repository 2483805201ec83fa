-- When an outbox entry was settled (delivered, refused or cancelled), so
-- that settled entries can be pruned after delivery.keep_settled: their
-- evidence (the partner's receipt, the refusal) is in the audit log, and
-- the alert and record blobs would otherwise grow the file forever.
-- 0: pending, or settled before this migration (pruned by created).
ALTER TABLE outbox ADD COLUMN settled INTEGER NOT NULL DEFAULT 0;

CREATE INDEX outbox_settled ON outbox (settled) WHERE state <> 1;
