-- A shipment is updated after its insert (confirmed, cancelled); room on
-- each page lets those updates be HOT (no indexed column changes), so
-- they skip index maintenance. Only pages written from now on keep it.
ALTER TABLE shipments SET (fillfactor = 70);
