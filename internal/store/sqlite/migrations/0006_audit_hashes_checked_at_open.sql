-- The tree hashes are derived data: every one is a function of the leaves
-- in audit_records, whose gapless trigger stays. The per-row gapless
-- trigger on audit_hashes cost about a quarter of an append's CPU (it runs
-- for the two hashes of every record, inside the group commit), so it goes;
-- Open checks instead that the ids are exactly 0..count-1 and that count
-- matches the records (backfillAuditHashes), and the sequencer writes ids
-- derived from the gapless seq. Updates and deletes stay refused.
DROP TRIGGER IF EXISTS audit_hashes_gapless;
