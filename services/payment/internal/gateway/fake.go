package gateway

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

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

	// The calls made at the same moment share a statement (see rounds).
	authorizes *rounds[authorizeRow, authorizeRow]
	operations *rounds[operation, operationResult]
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
	f := &Fake{pool: pool, latency: max(cfg.Latency, 0)}
	f.authorizes = newRounds(func(r authorizeRow) string { return r.key }, f.upsertAuthorizations)
	f.operations = newRounds(func(o operation) string { return o.key }, f.operateAll)
	return f
}

// Authorize implements Gateway.
//
// The common case costs one statement, committed on its own and shared
// with the calls made at the same moment: the first call with a key
// inserts its row already settled (the verdict for a first attempt), and
// a repeated call finds the settled row and answers from it. Only a
// pending row (TokenFlaky's timeouts) needs a second statement to settle
// it.
func (f *Fake) Authorize(ctx context.Context, req AuthorizeRequest) (Authorization, error) {
	if req.IdempotencyKey == "" {
		return Authorization{}, fmt.Errorf("%w: empty idempotency key", ErrRejected)
	}
	if req.AmountCents < 0 {
		return Authorization{}, fmt.Errorf("%w: negative amount %d", ErrRejected, req.AmountCents)
	}
	if err := storable("authorize", "idempotency key", req.IdempotencyKey, "card token", req.CardToken, "currency", req.Currency); err != nil {
		return Authorization{}, err
	}
	if err := f.wait(ctx); err != nil {
		return Authorization{}, err
	}
	first := settle(decide(req.CardToken, req.AmountCents, req.Currency, 1))
	row, err := f.authorizes.do(ctx, authorizeRow{key: req.IdempotencyKey, outcome: first.outcome, chargeID: newChargeID(),
		token: req.CardToken, amount: req.AmountCents, currency: req.Currency, code: first.code, reason: first.reason})
	if err != nil {
		return Authorization{}, f.fault("authorize", err)
	}
	if row.token != req.CardToken || row.amount != req.AmountCents || row.currency != req.Currency {
		// As real gateways do (Stripe answers 400): one key, one request.
		return Authorization{}, fmt.Errorf("%w: idempotency key %q was used for %d %s on %q, not %d %s on %q", ErrRejected,
			req.IdempotencyKey, row.amount, row.currency, row.token, req.AmountCents, req.Currency, req.CardToken)
	}
	outcome, code, reason := row.outcome, row.code, row.reason
	if outcome == "pending" && row.attempts > 1 {
		next := settle(decide(req.CardToken, req.AmountCents, req.Currency, row.attempts))
		if next.outcome != "pending" {
			const q = `
UPDATE gateway_charges SET outcome = $2, authorization_code = $3, decline_reason = $4, updated_at = now()
WHERE idempotency_key = $1 AND operation = 'authorize' AND outcome = 'pending'`
			if _, err := f.pool.Exec(ctx, q, req.IdempotencyKey, next.outcome, next.code, next.reason); err != nil {
				return Authorization{}, f.fault("authorize", err)
			}
			// Read back what is stored: a concurrent call may have settled
			// the row first, and its answer is the one that stands.
			const read = `
SELECT outcome, authorization_code, decline_reason FROM gateway_charges
WHERE idempotency_key = $1 AND operation = 'authorize'`
			if err := f.pool.QueryRow(ctx, read, req.IdempotencyKey).Scan(&outcome, &code, &reason); err != nil {
				return Authorization{}, f.fault("authorize", err)
			}
		}
	}
	if outcome == "pending" {
		return Authorization{}, fmt.Errorf("%w: authorize %s (attempt %d)", ErrTimeout, req.IdempotencyKey, row.attempts)
	}
	return Authorization{ChargeID: row.chargeID, Approved: outcome == "approved", Code: code, DeclineReason: reason}, nil
}

// authorizeRow is an authorization as the ledger holds it: what a call
// would insert, and what the upsert returns (the stored row, with the
// attempts counted so far).
type authorizeRow struct {
	key, outcome, chargeID, token string
	amount                        int64
	currency, code, reason        string
	attempts                      int
}

// upsertAuthorizations inserts a round's authorizations, or counts an
// attempt on those already there, and returns the stored rows. The
// upsert counts each attempt under the row's lock, so concurrent calls
// with one key (in different rounds) get distinct attempt numbers.
func (f *Fake) upsertAuthorizations(ctx context.Context, reqs []authorizeRow) ([]authorizeRow, error) {
	n := len(reqs)
	var (
		keys, outcomes, chargeIDs, tokens = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		currencies, codes, reasons        = make([]string, n), make([]string, n), make([]string, n)
		amounts                           = make([]int64, n)
		index                             = make(map[string]int, n)
	)
	for i, r := range reqs {
		keys[i], outcomes[i], chargeIDs[i], tokens[i] = r.key, r.outcome, r.chargeID, r.token
		currencies[i], codes[i], reasons[i], amounts[i] = r.currency, r.code, r.reason, r.amount
		index[r.key] = i
	}
	const upsert = `
INSERT INTO gateway_charges (idempotency_key, operation, outcome, attempts, charge_id, card_token, amount_cents, currency, authorization_code, decline_reason)
SELECT k, 'authorize', o, 1, ch, tok, amt, cur, code, reason
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[], $7::text[], $8::text[])
  AS u(k, o, ch, tok, amt, cur, code, reason)
ON CONFLICT (idempotency_key, operation)
DO UPDATE SET attempts = gateway_charges.attempts + 1, updated_at = now()
RETURNING idempotency_key, outcome, attempts, charge_id, card_token, amount_cents, currency, authorization_code, decline_reason`
	rows, err := f.pool.Query(ctx, upsert, keys, outcomes, chargeIDs, tokens, amounts, currencies, codes, reasons)
	if err != nil {
		return nil, err
	}
	out := make([]authorizeRow, n)
	found := 0
	var r authorizeRow
	_, err = pgx.ForEachRow(rows, []any{&r.key, &r.outcome, &r.attempts, &r.chargeID, &r.token, &r.amount, &r.currency, &r.code, &r.reason}, func() error {
		i, ok := index[r.key]
		if !ok {
			return fmt.Errorf("upsert returned key %q, which was not asked for", r.key)
		}
		out[i] = r
		found++
		return nil
	})
	if err == nil && found != n {
		err = fmt.Errorf("upsert returned %d rows for %d keys", found, n)
	}
	return out, err
}

// settlement is a verdict as the ledger stores it.
type settlement struct{ outcome, code, reason string }

func settle(v verdict) settlement {
	switch {
	case v.timeout:
		return settlement{outcome: "pending"} // nothing charged, the attempt counted
	case v.approve:
		return settlement{outcome: "approved", code: newAuthorizationCode()}
	default:
		return settlement{outcome: "declined", reason: v.reason}
	}
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
	if err := storable(op, "idempotency key", req.IdempotencyKey, "charge id", req.ChargeID); err != nil {
		return Receipt{}, err
	}
	if err := f.wait(ctx); err != nil {
		return Receipt{}, err
	}
	res, err := f.operations.do(ctx, operation{key: req.IdempotencyKey, op: op, chargeID: req.ChargeID})
	if err != nil {
		return Receipt{}, f.fault(op, err)
	}
	out, verdict, detail := res.receipt, res.verdict, res.detail
	switch verdict {
	case "done", "again":
		return out, nil
	case "no_authorization":
		return Receipt{}, fmt.Errorf("%w: %s: %w %q", ErrRejected, op, ErrNoAuthorization, req.IdempotencyKey)
	case "not_approved":
		return Receipt{}, fmt.Errorf("%w: %s: authorization %s is %s", ErrRejected, op, out.ChargeID, detail)
	case "other_charge":
		return Receipt{}, fmt.Errorf("%w: %s: key %q belongs to charge %s, not %s", ErrRejected, op, req.IdempotencyKey, out.ChargeID, req.ChargeID)
	case "conflict":
		return Receipt{}, fmt.Errorf("%w: %s: charge %s is %s", ErrRejected, op, out.ChargeID, detail)
	default:
		return Receipt{}, f.fault(op, fmt.Errorf("gateway_operate: unknown verdict %q", verdict))
	}
}

// operation is a follow-up call on an authorization, and operationResult
// what gateway_operate answered.
type operation struct{ key, op, chargeID string }

type operationResult struct {
	receipt         Receipt
	verdict, detail string
}

// operateAll runs a round's operations: gateway_operate (migration 003)
// once per operation, in one statement, each doing its checks and its
// write under the authorization's row lock.
func (f *Fake) operateAll(ctx context.Context, ops []operation) ([]operationResult, error) {
	keys, names, charges := make([]string, len(ops)), make([]string, len(ops)), make([]string, len(ops))
	for i, o := range ops {
		keys[i], names[i], charges[i] = o.key, o.op, o.chargeID
	}
	// Only verdicts past the authorization lookup carry the charge.
	const q = `
SELECT o_verdict, coalesce(o_charge_id, ''), coalesce(o_amount_cents, 0), coalesce(o_currency, ''), coalesce(o_detail, '')
FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS u(k, op, ch, n)
CROSS JOIN LATERAL gateway_operate(u.k, u.op, u.ch)
ORDER BY u.n`
	rows, err := f.pool.Query(ctx, q, keys, names, charges)
	if err != nil {
		return nil, err
	}
	out := make([]operationResult, 0, len(ops))
	var r operationResult
	_, err = pgx.ForEachRow(rows, []any{&r.verdict, &r.receipt.ChargeID, &r.receipt.AmountCents, &r.receipt.Currency, &r.detail}, func() error {
		out = append(out, r)
		return nil
	})
	if err == nil && len(out) != len(ops) {
		err = fmt.Errorf("gateway_operate answered %d of %d operations", len(out), len(ops))
	}
	return out, err
}

// storable rejects a request whose text fields (name, value pairs) the
// ledger cannot store: PostgreSQL's text takes neither U+0000 nor bytes
// that are not UTF-8. Refused by the ledger's statement, such a value
// looked like the ledger failing (ErrUnavailable, which the payment
// service retries as an outage for minutes), and made every call of its
// round go again alone (see rounds).
func storable(op string, fields ...string) error {
	for i := 0; i+1 < len(fields); i += 2 {
		name, v := fields[i], fields[i+1]
		if !utf8.ValidString(v) || strings.IndexByte(v, 0) >= 0 {
			return fmt.Errorf("%w: %s: the %s %q is not text without U+0000", ErrRejected, op, name, v)
		}
	}
	return nil
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
