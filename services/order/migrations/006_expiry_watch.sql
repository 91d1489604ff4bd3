-- The order expiry's watch over its own events (app.ExpireLoop): since
-- when they have been published without a hold-up (flowing_since; NULL: a
-- hold-up now) and when a replica last looked (checked_at). Shared by the
-- replicas and kept across restarts, so a restart does not forget an
-- outage; a gap in the looking (every replica down, say) counts as a
-- hold-up, since nobody saw the events flow meanwhile.
CREATE TABLE expiry_watch (
    id            int         PRIMARY KEY CHECK (id = 1),
    flowing_since timestamptz,
    checked_at    timestamptz NOT NULL
);
