-- A reservation is updated after its insert (committed, released,
-- cancelled); since 002 no index covers its status, so with room on each
-- page those updates are HOT and skip index maintenance. Only pages
-- written from now on keep the room.
ALTER TABLE reservations SET (fillfactor = 70);
