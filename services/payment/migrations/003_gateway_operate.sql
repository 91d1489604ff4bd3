-- The fake gateway's follow-up operations (capture, void, refund) in one
-- call: one round trip and one statement instead of BEGIN, two reads, a
-- write and COMMIT. In a plpgsql function each statement takes its own
-- snapshot (READ COMMITTED), so the operations already done are read
-- after the authorization's row lock is held, as before: a concurrent
-- call with the same key is seen, never raced.
--
-- verdict is what the Go side turns into a receipt or an error:
--   done             the operation was recorded now
--   again            it was recorded before: same receipt, no second movement
--   no_authorization there is no authorization for the key
--   not_approved     the authorization is o_detail (pending or declined)
--   other_charge     the key belongs to another charge (o_charge_id)
--   conflict         the charge's state forbids it: o_detail says why
CREATE FUNCTION gateway_operate(p_key text, p_op text, p_charge text,
    OUT o_verdict text, OUT o_charge_id text, OUT o_amount_cents bigint, OUT o_currency text, OUT o_detail text)
LANGUAGE plpgsql AS $$
DECLARE
    auth_outcome text;
    done         text[];
BEGIN
    SELECT g.outcome, g.charge_id, g.amount_cents, g.currency
    INTO auth_outcome, o_charge_id, o_amount_cents, o_currency
    FROM gateway_charges g
    WHERE g.idempotency_key = p_key AND g.operation = 'authorize'
    FOR UPDATE;
    IF NOT FOUND THEN
        o_verdict := 'no_authorization';
        RETURN;
    END IF;
    IF auth_outcome <> 'approved' THEN
        o_verdict := 'not_approved';
        o_detail := auth_outcome;
        RETURN;
    END IF;
    IF p_charge <> '' AND p_charge <> o_charge_id THEN
        o_verdict := 'other_charge';
        RETURN;
    END IF;
    SELECT coalesce(array_agg(g.operation), '{}') INTO done
    FROM gateway_charges g
    WHERE g.idempotency_key = p_key AND g.operation <> 'authorize' AND g.outcome = 'approved';
    IF p_op = ANY (done) THEN
        UPDATE gateway_charges g SET attempts = g.attempts + 1, updated_at = now()
        WHERE g.idempotency_key = p_key AND g.operation = p_op;
        o_verdict := 'again';
        RETURN;
    END IF;
    o_detail := CASE
        WHEN p_op = 'capture' AND 'void' = ANY (done) THEN 'voided'
        WHEN p_op = 'void' AND 'capture' = ANY (done) THEN 'captured'
        WHEN p_op = 'refund' AND NOT 'capture' = ANY (done) THEN 'not captured'
    END;
    IF o_detail IS NOT NULL THEN
        o_verdict := 'conflict';
        RETURN;
    END IF;
    INSERT INTO gateway_charges (idempotency_key, operation, outcome, attempts, charge_id, amount_cents, currency)
    VALUES (p_key, p_op, 'approved', 1, o_charge_id, o_amount_cents, o_currency);
    o_verdict := 'done';
END
$$;
