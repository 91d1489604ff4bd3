-- The order service's own tables, in schema "orders" (search_path).

-- The catalog: prices are taken from here, never from the client.
CREATE TABLE products (
    sku         text        PRIMARY KEY CHECK (sku ~ '^[A-Z0-9][A-Z0-9-]{0,63}$'),
    name        text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    price_cents bigint      NOT NULL CHECK (price_cents > 0),
    currency    text        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    active      boolean     NOT NULL DEFAULT true,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- One row per order; the saga's state is the status plus one status per
-- step, changed only under a row lock (SELECT ... FOR UPDATE) so the
-- outbox rows of one order are written in commit order.
CREATE TABLE orders (
    id                uuid        PRIMARY KEY,
    customer_id       text        NOT NULL,
    status            text        NOT NULL CHECK (status IN ('pending', 'confirmed', 'cancelled')),
    reason            text        NOT NULL DEFAULT '',
    currency          text        NOT NULL,
    total_cents       bigint      NOT NULL CHECK (total_cents > 0),
    payment_step      text        NOT NULL DEFAULT 'pending',
    inventory_step    text        NOT NULL DEFAULT 'pending',
    shipping_step     text        NOT NULL DEFAULT 'pending',
    payment_failure   text        NOT NULL DEFAULT '',
    inventory_failure text        NOT NULL DEFAULT '',
    customer_cancel   boolean     NOT NULL DEFAULT false,
    tracking_number   text        NOT NULL DEFAULT '',
    shipping_address  jsonb       NOT NULL,
    placed_at         timestamptz NOT NULL,
    confirmed_at      timestamptz,
    cancelled_at      timestamptz,
    updated_at        timestamptz NOT NULL
);
-- Keyset pagination: newest first (UUIDv7 ids sort by creation time).
CREATE INDEX orders_customer_id ON orders (customer_id, id DESC);
CREATE INDEX orders_status_id ON orders (status, id DESC);

CREATE TABLE order_lines (
    order_id         uuid   NOT NULL REFERENCES orders (id),
    line_no          int    NOT NULL,
    sku              text   NOT NULL,
    name             text   NOT NULL,
    quantity         int    NOT NULL CHECK (quantity BETWEEN 1 AND 1000),
    unit_price_cents bigint NOT NULL CHECK (unit_price_cents > 0),
    PRIMARY KEY (order_id, line_no)
);

-- Idempotency-Key records (Stripe's rules). A key is claimed before the
-- work starts (state in_flight) and completed in the same transaction as
-- the order, with the response to replay. Kept 24 hours.
CREATE TABLE idempotency_keys (
    key             text        PRIMARY KEY,
    fingerprint     bytea       NOT NULL,
    state           text        NOT NULL CHECK (state IN ('in_flight', 'done')),
    -- Which request holds an in-flight key: completing it needs the same
    -- claim, so a request that took over an abandoned key and the slow
    -- original cannot both complete it.
    claim           uuid        NOT NULL,
    response_status int,
    response_body   bytea,
    location        text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
