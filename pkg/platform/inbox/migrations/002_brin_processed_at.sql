-- processed_at is there to prune old rows by age; nothing reads it per
-- row. As a B-tree it cost an index entry (and its WAL record) for every
-- applied event: a sixth of all B-tree inserts in shop load. Rows arrive
-- in processed_at order, so a BRIN index finds the old ones as well, for
-- a few pages instead of one entry per row.
DROP INDEX inbox_processed_at;
CREATE INDEX inbox_processed_at ON inbox USING brin (processed_at);
