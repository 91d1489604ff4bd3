-- A payment is updated after its insert (captured, voided, refunded), and
-- the fake gateway's rows on every retried call; room on each page lets
-- those updates be HOT (no indexed column changes), so they skip index
-- maintenance. Only pages written from now on keep the room.
ALTER TABLE payments SET (fillfactor = 70);
ALTER TABLE gateway_charges SET (fillfactor = 70);
