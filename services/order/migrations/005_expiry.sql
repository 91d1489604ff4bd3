-- An order pending for longer than ORDER_PENDING_TIMEOUT is cancelled
-- (a step that never answers would hold the customer's money and the
-- stock for good); expiry names the steps that had not answered, and is
-- the reason shown. A constant default: no table rewrite.
ALTER TABLE orders ADD COLUMN expiry text NOT NULL DEFAULT '';
