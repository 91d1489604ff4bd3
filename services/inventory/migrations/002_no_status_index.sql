-- No query looks reservations up by status any more (the batch lock reads
-- them by order id), and the index cost twice: a planner short of
-- statistics scanned every 'reserved' reservation through it for each
-- batch, and every status change (reserve, commit, release) had to update
-- it, so none could be a HOT update.
DROP INDEX IF EXISTS reservations_status;
