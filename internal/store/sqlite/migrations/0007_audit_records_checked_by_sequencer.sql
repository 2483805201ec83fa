-- The per-row gapless trigger on audit_records ran a MAX(seq) subquery for
-- every record inside the group commit: half the cost of inserting a
-- batch's rows. The sequencer already reads MAX(seq) once per batch, under
-- the write lock, to number the batch; it now also compares it with the
-- last seq it committed itself and refuses to append when they differ (a
-- row written by anyone else, with or without a gap). Such a row has no
-- tree hashes, so Open refuses the file too (backfillAuditHashes). Updates
-- and deletes stay refused by triggers.
DROP TRIGGER audit_records_gapless;
