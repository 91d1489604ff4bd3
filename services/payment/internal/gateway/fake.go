package gateway

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Fake is a gateway that behaves like an external one, deterministic by
// card token (see decide): TokenVisa approves, TokenDeclined declines,
// TokenFlaky times out FlakyTimeouts times per key and then approves,
// amounts over LimitMajorUnits decline.
//
// It keeps its own ledger, the gateway_charges table, written in its own
// transactions on its own pool: never inside the caller's transaction. A
// charge it made therefore survives the caller's rollback, and the
// caller's retry with the same key gets the stored answer back.
type Fake struct {
	pool    *pgxpool.Pool
	latency time.Duration
}

// FakeConfig tunes a Fake.
type FakeConfig struct {
	// Latency is added to every call, as a network round trip would be.
	Latency time.Duration
}

// NewFake returns a Fake keeping its ledger through pool, which should be
// the gateway's own (so a caller holding connections in a transaction
// cannot starve it).
func NewFake(pool *pgxpool.Pool, cfg FakeConfig) *Fake {
	return &Fake{pool: pool, latency: max(cfg.Latency, 0)}
}

// Authorize implements Gateway.
func (f *Fake) Authorize(ctx context.Context, req AuthorizeRequest) (Authorization, error) {
	if req.IdempotencyKey == "" {
		return Authorization{}, fmt.Errorf("%w: empty idempotency key", ErrRejected)
	}
	if err := f.wait(ctx); err != nil {
		return Authorization{}, err
	}
	var (
		out      Authorization
		timedOut bool
	)
	err := pgx.BeginFunc(ctx, f.pool, func(tx pgx.Tx) error {
		// Count the attempt and lock the key's row: concurrent calls with
		// one key are answered one after the other.
		const upsert = `
INSERT INTO gateway_charges (idempotency_key, operation, outcome, attempts, charge_id, card_token, amount_cents, currency)
VALUES ($1, 'authorize', 'pending', 1, $2, $3, $4, $5)
ON CONFLICT (idempotency_key, operation)
DO UPDATE SET attempts = gateway_charges.attempts + 1, updated_at = now()
RETURNING outcome, attempts, charge_id, card_token, amount_cents, currency, authorization_code, decline_reason`
		var (
			outcome, chargeID, token, currency, code, reason string
			attempts                                         int
			amount                                           int64
		)
		err := tx.QueryRow(ctx, upsert, req.IdempotencyKey, newChargeID(), req.CardToken, req.AmountCents, req.Currency).
			Scan(&outcome, &attempts, &chargeID, &token, &amount, &currency, &code, &reason)
		if err != nil {
			return err
		}
		if token != req.CardToken || amount != req.AmountCents || currency != req.Currency {
			// As real gateways do (Stripe answers 400): one key, one request.
			return fmt.Errorf("%w: idempotency key %q was used for %d %s on %q, not %d %s on %q", ErrRejected,
				req.IdempotencyKey, amount, currency, token, req.AmountCents, req.Currency, req.CardToken)
		}
		out = Authorization{ChargeID: chargeID, Approved: outcome == "approved", Code: code, DeclineReason: reason}
		if outcome != "pending" {
			return nil // answered before: the same answer again, nothing charged again
		}
		v := decide(req.CardToken, req.AmountCents, req.Currency, attempts)
		if v.timeout {
			timedOut = true
			return nil // commit the attempt count, charge nothing
		}
		outcome = "declined"
		if v.approve {
			outcome, out.Approved, out.Code = "approved", true, newAuthorizationCode()
		} else {
			out.DeclineReason = v.reason
		}
		const settle = `
UPDATE gateway_charges SET outcome = $3, authorization_code = $4, decline_reason = $5, updated_at = now()
WHERE idempotency_key = $1 AND operation = $2`
		_, err = tx.Exec(ctx, settle, req.IdempotencyKey, "authorize", outcome, out.Code, out.DeclineReason)
		return err
	})
	if err != nil {
		return Authorization{}, f.fault("authorize", err)
	}
	if timedOut {
		return Authorization{}, fmt.Errorf("%w: authorize %s", ErrTimeout, req.IdempotencyKey)
	}
	return out, nil
}

// Capture implements Gateway.
func (f *Fake) Capture(ctx context.Context, req OperationRequest) (Receipt, error) {
	return f.operate(ctx, "capture", req)
}

// Void implements Gateway.
func (f *Fake) Void(ctx context.Context, req OperationRequest) (Receipt, error) {
	return f.operate(ctx, "void", req)
}

// Refund implements Gateway.
func (f *Fake) Refund(ctx context.Context, req OperationRequest) (Receipt, error) {
	return f.operate(ctx, "refund", req)
}

// operate runs a follow-up operation on an approved authorization, once
// per (key, operation), refusing what the charge's state forbids: a void
// after capture, a capture after void, a refund without capture.
func (f *Fake) operate(ctx context.Context, op string, req OperationRequest) (Receipt, error) {
	if req.IdempotencyKey == "" {
		return Receipt{}, fmt.Errorf("%w: empty idempotency key", ErrRejected)
	}
	if err := f.wait(ctx); err != nil {
		return Receipt{}, err
	}
	var out Receipt
	err := pgx.BeginFunc(ctx, f.pool, func(tx pgx.Tx) error {
		const auth = `
SELECT outcome, charge_id, amount_cents, currency FROM gateway_charges
WHERE idempotency_key = $1 AND operation = 'authorize' FOR UPDATE`
		var outcome string
		err := tx.QueryRow(ctx, auth, req.IdempotencyKey).Scan(&outcome, &out.ChargeID, &out.AmountCents, &out.Currency)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("%w: %s: no authorization for key %q", ErrRejected, op, req.IdempotencyKey)
		}
		if err != nil {
			return err
		}
		if outcome != "approved" {
			return fmt.Errorf("%w: %s: authorization %s is %s", ErrRejected, op, out.ChargeID, outcome)
		}
		if req.ChargeID != "" && req.ChargeID != out.ChargeID {
			return fmt.Errorf("%w: %s: key %q belongs to charge %s, not %s", ErrRejected, op, req.IdempotencyKey, out.ChargeID, req.ChargeID)
		}
		const doneQ = `
SELECT operation FROM gateway_charges
WHERE idempotency_key = $1 AND operation <> 'authorize' AND outcome = 'approved'`
		rows, err := tx.Query(ctx, doneQ, req.IdempotencyKey)
		if err != nil {
			return err
		}
		doneOps, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		done := map[string]bool{}
		for _, d := range doneOps {
			done[d] = true
		}
		if done[op] {
			const again = `
UPDATE gateway_charges SET attempts = attempts + 1, updated_at = now()
WHERE idempotency_key = $1 AND operation = $2`
			_, err := tx.Exec(ctx, again, req.IdempotencyKey, op)
			return err // answered before: same receipt, no second movement
		}
		var conflict string
		switch {
		case op == "capture" && done["void"]:
			conflict = "voided"
		case op == "void" && done["capture"]:
			conflict = "captured"
		case op == "refund" && !done["capture"]:
			conflict = "not captured"
		}
		if conflict != "" {
			return fmt.Errorf("%w: %s: charge %s is %s", ErrRejected, op, out.ChargeID, conflict)
		}
		const insert = `
INSERT INTO gateway_charges (idempotency_key, operation, outcome, attempts, charge_id, amount_cents, currency)
VALUES ($1, $2, 'approved', 1, $3, $4, $5)`
		_, err = tx.Exec(ctx, insert, req.IdempotencyKey, op, out.ChargeID, out.AmountCents, out.Currency)
		return err
	})
	if err != nil {
		return Receipt{}, f.fault(op, err)
	}
	return out, nil
}

// fault maps a failure inside the fake to what a caller of a real gateway
// would see: its own rejections as they are, anything else (the ledger's
// database failing) as the gateway being unavailable.
func (f *Fake) fault(op string, err error) error {
	if errors.Is(err, ErrRejected) {
		return err
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return fmt.Errorf("%w: %s: %v", ErrTimeout, op, err)
	}
	return fmt.Errorf("%w: %s: %v", ErrUnavailable, op, err)
}

// wait adds the configured latency; a caller giving up first sees a timeout.
func (f *Fake) wait(ctx context.Context) error {
	if f.latency == 0 {
		return nil
	}
	t := time.NewTimer(f.latency)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return fmt.Errorf("%w: %v", ErrTimeout, ctx.Err())
	case <-t.C:
		return nil
	}
}

func newChargeID() string {
	return "ch_" + strings.ReplaceAll(uuid.Must(uuid.NewV7()).String(), "-", "")
}

// newAuthorizationCode returns six characters from an alphabet without
// look-alikes, as card networks' approval codes are.
func newAuthorizationCode() string {
	const alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
	b := make([]byte, 6)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}
