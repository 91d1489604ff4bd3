-- Pruning finds old rows through the primary key (ce_id is a UUIDv7,
-- which sorts by time; see inbox.Prune), not through processed_at: once
-- pruning and VACUUM let new rows fill pages of old ones, every block
-- range of a BRIN index on processed_at matches an "older than" query,
-- and each round read the whole table. Nothing else reads this index.
DROP INDEX inbox_processed_at;
