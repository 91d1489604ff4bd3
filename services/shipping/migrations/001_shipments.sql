-- One shipment per order: the carrier booking made on OrderPlaced.
-- order_id is the natural key (a second OrderPlaced for the same order,
-- redelivered under another event id, finds the row and does nothing).
-- Tracking serials come from a sequence, so numbers never collide.
CREATE SEQUENCE tracking_serial AS bigint MINVALUE 1 MAXVALUE 9999999999;

CREATE TABLE shipments (
    order_id        text        PRIMARY KEY,
    shipment_id     uuid        NOT NULL UNIQUE,
    carrier         text        NOT NULL,
    tracking_number text        NOT NULL UNIQUE,
    status          text        NOT NULL CHECK (status IN ('scheduled', 'ready', 'cancelled')),
    name            text        NOT NULL,
    line1           text        NOT NULL,
    line2           text        NOT NULL DEFAULT '',
    city            text        NOT NULL,
    postal_code     text        NOT NULL,
    country         text        NOT NULL CHECK (country ~ '^[A-Z]{2}$'),
    placed_at       timestamptz NOT NULL,
    pickup_at       timestamptz NOT NULL,
    -- The warehouse zone the slot was booked in, so the label prints the
    -- slot as booked even if SHIPPING_TIMEZONE changes later.
    pickup_zone     text        NOT NULL,
    cancel_reason   text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Every status change of a shipment, with the event that caused it.
CREATE TABLE shipment_history (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id   text        NOT NULL REFERENCES shipments (order_id),
    status     text        NOT NULL,
    event_id   text        NOT NULL,
    note       text        NOT NULL DEFAULT '',
    at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX shipment_history_order ON shipment_history (order_id, id);

-- Cancellations of orders this service never scheduled: a compensation
-- for nothing, recorded so the no-op is visible (and so a late
-- OrderPlaced for the order books nothing).
CREATE TABLE unscheduled_cancellations (
    order_id        text        PRIMARY KEY,
    event_id        text        NOT NULL,
    reason          text        NOT NULL,
    cancelled_at    timestamptz NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    -- Set when an OrderPlaced for the order arrived after its cancellation
    -- and was therefore not scheduled.
    placed_ignored_at timestamptz
);
