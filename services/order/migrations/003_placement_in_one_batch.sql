-- Placement runs as one pipelined batch in an implicit transaction: one
-- round trip and one commit, no BEGIN or COMMIT of its own. The batch
-- cannot branch on what the key lookup found, so its first statement
-- raises instead, and the error rolls the whole batch back before anything
-- is stored:
--   SF409  another transaction holds the key right now (in flight);
--   SF200  a request with this key completed within ttl (replay it, or
--          422 when the body differs: the caller reads the stored row).
-- The advisory lock is transaction-scoped, so it is released with the
-- batch's commit or rollback, or when the connection dies.
CREATE FUNCTION take_idempotency_key(k text, ttl interval) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtextextended('shopflow.idempotency.' || k, 0)) THEN
        RAISE EXCEPTION 'Idempotency-Key % is in flight', k USING ERRCODE = 'SF409';
    END IF;
    IF EXISTS (SELECT 1 FROM idempotency_keys WHERE key = k AND created_at > now() - ttl) THEN
        RAISE EXCEPTION 'Idempotency-Key % was used', k USING ERRCODE = 'SF200';
    END IF;
END
$$;

-- The service prices orders from its in-memory copy of the catalog and
-- checks, in the placement batch, that every line still matches the
-- catalog: active, same name, price and currency. A line that does not
-- (another replica changed the product, or this one did and the copy is
-- stale) raises SF412 and rolls the batch back; the service re-reads the
-- products and prices again. So an order is always priced at the
-- catalog as committed when it is placed, without a read of its own.
CREATE FUNCTION check_prices(skus text[], names text[], prices bigint[], cur text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF (SELECT count(*)
        FROM unnest(skus, names, prices) AS l(sku, name, price_cents)
        JOIN products p ON p.sku = l.sku
        WHERE p.active AND p.currency = cur AND p.name = l.name AND p.price_cents = l.price_cents)
       <> cardinality(skus) THEN
        RAISE EXCEPTION 'the catalog changed while the order was priced' USING ERRCODE = 'SF412';
    END IF;
END
$$;
