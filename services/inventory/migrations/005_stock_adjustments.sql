-- The ledger of every change of on hand that is not a sale: an admin's
-- PUT /v1/stock/{sku} (shop seed's included), one row per change, written
-- in the change's transaction (none when the value stays the same). Sales
-- are the committed reservations' lines; so for every SKU
--     on_hand = sum(delta) - the quantity of its committed reservation lines,
-- which `shop check` verifies. A change of on hand made around the service
-- (a manual UPDATE) leaves no row here and breaks that equation.
-- No foreign key to stock: a ledger left for a SKU whose stock row is gone
-- is evidence to report, not something to cascade away.
CREATE TABLE stock_adjustments (
    id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sku           text        NOT NULL,
    delta         bigint      NOT NULL,
    on_hand_after bigint      NOT NULL,
    at            timestamptz NOT NULL DEFAULT now(),
    source        text        NOT NULL
);

-- The opening balance of each SKU that exists already, so a database
-- migrated with stock and sales in it satisfies the equation above from
-- the start: delta is what the SKU must have received for its on hand
-- now after what it sold, i.e. on hand plus the quantity of its committed
-- reservation lines. One statement, so stock and reservations are read at
-- one moment (a commit moves both in one transaction).
INSERT INTO stock_adjustments (sku, delta, on_hand_after, source)
SELECT s.sku, s.on_hand + coalesce(sold.quantity, 0), s.on_hand, 'opening balance'
FROM stock s
LEFT JOIN (
    SELECT l.sku, sum(l.quantity) AS quantity
    FROM reservation_lines l JOIN reservations r ON r.order_id = l.order_id
    WHERE r.status = 'committed'
    GROUP BY l.sku
) sold ON sold.sku = s.sku
ORDER BY s.sku;
