-- Events this schema's consumers have applied, one row per (consumer group,
-- event id). The row is inserted in the same transaction as the event's
-- effects, so "inserted" means "applied" and a redelivery finds it.
CREATE TABLE inbox (
    consumer     text        NOT NULL,
    event_id     text        NOT NULL,
    event_type   text        NOT NULL,
    topic        text        NOT NULL,
    kpartition   integer     NOT NULL,
    koffset      bigint      NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);
CREATE INDEX inbox_processed_at ON inbox (processed_at);
