-- Events waiting to be published, written in the same transaction as the
-- state change they describe. The relay publishes them in id order and
-- deletes them once the broker has acknowledged them (acks=all).
CREATE TABLE outbox (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    topic      text        NOT NULL CHECK (topic <> ''),
    key        bytea       NOT NULL,
    value      bytea       NOT NULL,
    -- Kafka headers in order, as [[key, value], ...] (CloudEvents headers
    -- are text).
    headers    jsonb       NOT NULL DEFAULT '[]',
    created_at timestamptz NOT NULL DEFAULT now()
);
