-- One row per order the payment service has dealt with. status is the
-- payment's current state; the CHECKs keep impossible rows out whatever the
-- code does.
--   authorized, declined   after OrderPlaced (the gateway's answer)
--   captured               after OrderConfirmed
--   voided, refunded       after OrderCancelled (authorization released /
--                          captured money paid back)
--   cancelled              OrderCancelled arrived for an order never paid
--                          here: a tombstone, so a late OrderPlaced (e.g.
--                          replayed from the DLQ) does not charge a
--                          cancelled order
CREATE TABLE payments (
    order_id           text        PRIMARY KEY,
    payment_id         text        UNIQUE,
    status             text        NOT NULL CHECK (status IN ('authorized', 'declined', 'captured', 'voided', 'refunded', 'cancelled')),
    amount_cents       bigint      NOT NULL CHECK (amount_cents >= 0),
    currency           text        NOT NULL CHECK (currency = '' OR currency ~ '^[A-Z]{3}$'),
    charge_id          text        NOT NULL DEFAULT '', -- the gateway's id, for reconciliation
    authorization_code text        NOT NULL DEFAULT '',
    reason             text        NOT NULL DEFAULT '',
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CHECK (status = 'cancelled' OR payment_id IS NOT NULL),
    CHECK (status NOT IN ('authorized', 'captured', 'voided', 'refunded') OR authorization_code <> '')
);

-- Append-only status history, one row per event the service applied to an
-- order, including the ones that changed nothing (a capture for a declined
-- payment, a compensation for an order never paid here): "recorded no-op".
-- No foreign key: an OrderConfirmed for an order never seen has a history
-- entry but no payment.
CREATE TABLE payment_history (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id   text        NOT NULL,
    status     text        NOT NULL,
    event_id   text        NOT NULL,
    event_type text        NOT NULL,
    detail     text        NOT NULL,
    at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payment_history_order ON payment_history (order_id, id);

-- The fake payment gateway's own ledger. It stands in for an external
-- system, so it is written on the gateway's own connection and commits
-- independently of the consumer's transaction: a charge the gateway made
-- stays made when the caller's transaction rolls back. One row per
-- (idempotency key, operation); a retry with the same key finds the row
-- and gets the same answer, never a second charge. attempts counts calls.
CREATE TABLE gateway_charges (
    idempotency_key    text        NOT NULL,
    operation          text        NOT NULL CHECK (operation IN ('authorize', 'capture', 'void', 'refund')),
    outcome            text        NOT NULL CHECK (outcome IN ('pending', 'approved', 'declined')),
    attempts           integer     NOT NULL CHECK (attempts >= 1),
    charge_id          text        NOT NULL,
    card_token         text        NOT NULL DEFAULT '',
    amount_cents       bigint      NOT NULL CHECK (amount_cents >= 0),
    currency           text        NOT NULL,
    authorization_code text        NOT NULL DEFAULT '',
    decline_reason     text        NOT NULL DEFAULT '',
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (idempotency_key, operation)
);
