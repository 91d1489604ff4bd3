-- Reservation lines are read by order only (their primary key's prefix);
-- nothing looks them up by SKU, yet this index took an entry and a WAL
-- record for every line reserved (pg_stat_user_indexes: no scan in
-- shop load --orders 7000; 10,537 entries per 5,000 orders).
DROP INDEX IF EXISTS reservation_lines_sku;
