package gateway

import (
	"github.com/shopflow/shopflow/services/payment/internal/payment"
)

// The card tokens the fake gateway knows.
const (
	TokenVisa     = "tok_visa"     // approves
	TokenDeclined = "tok_declined" // declines with ReasonCardDeclined
	TokenFlaky    = "tok_flaky"    // times out FlakyTimeouts times per key, then approves
)

// FlakyTimeouts is how many attempts per idempotency key time out for
// TokenFlaky before it approves.
const FlakyTimeouts = 2

// LimitMajorUnits is the largest amount the fake gateway authorizes, in
// major units of the currency (10,000.00 USD is 1,000,000 cents).
const LimitMajorUnits = 10_000

// Decline reasons: short, stable, machine-readable.
const (
	ReasonCardDeclined        = "card_declined"
	ReasonAmountExceedsLimit  = "amount_exceeds_limit"
	ReasonUnknownCard         = "invalid_card"
	ReasonUnsupportedCurrency = "unsupported_currency"
)

// verdict is the fake's decision for one authorization attempt.
type verdict struct {
	timeout bool   // answer ErrTimeout (nothing charged)
	approve bool   // otherwise approve, or decline with reason
	reason  string // decline reason
}

// decide is the fake gateway's deterministic authorization rule for the
// attempt-th call (1-based) with one idempotency key. The flaky token's
// timeouts come first, as a network fault would, before any rule runs.
func decide(token string, amountCents int64, currency string, attempt int) verdict {
	if token == TokenFlaky && attempt <= FlakyTimeouts {
		return verdict{timeout: true}
	}
	perMajor, ok := payment.MinorPerMajor(currency)
	if !ok {
		return verdict{reason: ReasonUnsupportedCurrency}
	}
	if amountCents > LimitMajorUnits*perMajor {
		return verdict{reason: ReasonAmountExceedsLimit}
	}
	switch token {
	case TokenVisa, TokenFlaky:
		return verdict{approve: true}
	case TokenDeclined:
		return verdict{reason: ReasonCardDeclined}
	default:
		return verdict{reason: ReasonUnknownCard}
	}
}
