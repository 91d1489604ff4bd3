-- Stock per SKU. available is derived from on_hand and reserved and checked
-- to stay non-negative, so no code path (a bug, a race, a manual UPDATE) can
-- promise more than is on the shelf.
CREATE TABLE stock (
    sku        text        PRIMARY KEY CHECK (sku ~ '^[A-Z0-9][A-Z0-9-]{0,63}$'),
    on_hand    bigint      NOT NULL CHECK (on_hand BETWEEN 0 AND 1000000000),
    reserved   bigint      NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    available  bigint      GENERATED ALWAYS AS (on_hand - reserved) STORED CONSTRAINT stock_available_nonnegative CHECK (available >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- One row per order the service has heard of, whatever the outcome, so a
-- redelivered OrderPlaced, a late OrderCancelled or a duplicate
-- OrderConfirmed finds what was decided. The primary key is the natural
-- uniqueness behind the inbox's dedup: one reservation per order.
CREATE TABLE reservations (
    order_id       text        PRIMARY KEY,
    reservation_id uuid        NOT NULL UNIQUE,
    status         text        NOT NULL CHECK (status IN ('reserved', 'committed', 'released', 'rejected', 'cancelled')),
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    -- Set when OrderCancelled arrives, whatever it did: the record of a
    -- compensation that had nothing to undo.
    cancelled_at   timestamptz,
    cancel_reason  text
);
CREATE INDEX reservations_status ON reservations (status);

-- The merged lines of an order: what is (or was, or would have been) held.
CREATE TABLE reservation_lines (
    order_id text   NOT NULL REFERENCES reservations (order_id) ON DELETE CASCADE,
    sku      text   NOT NULL,
    quantity bigint NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (order_id, sku)
);
CREATE INDEX reservation_lines_sku ON reservation_lines (sku);
