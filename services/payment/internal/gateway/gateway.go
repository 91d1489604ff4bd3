// Package gateway is the payment service's port to a card payment gateway,
// and Fake, a gateway that behaves like an external one.
//
// Every call carries an idempotency key (the order id): the gateway keeps
// the outcome of each (key, operation) and answers a repeated call with the
// stored outcome instead of acting twice. That is what lets the consumer
// retry freely: a call that succeeded but whose answer was lost (timeout,
// crash, a rolled-back transaction) is simply made again and returns the
// same authorization, without a second charge.
//
// Errors are of two kinds, told apart with Transient: ErrTimeout and
// ErrUnavailable (the call may be retried, with the same key) and
// ErrRejected (the request itself is wrong; retrying cannot help).
package gateway

import (
	"context"
	"errors"
)

// Gateway is a card payment gateway. Each operation is idempotent by
// (IdempotencyKey, operation).
type Gateway interface {
	// Authorize holds the amount on the card. A decline is an answer
	// (Authorization.Approved false), not an error.
	Authorize(ctx context.Context, req AuthorizeRequest) (Authorization, error)
	// Capture collects an approved authorization.
	Capture(ctx context.Context, req OperationRequest) (Receipt, error)
	// Void releases an approved authorization that was not captured.
	Void(ctx context.Context, req OperationRequest) (Receipt, error)
	// Refund pays a capture back.
	Refund(ctx context.Context, req OperationRequest) (Receipt, error)
}

// AuthorizeRequest asks for an authorization.
type AuthorizeRequest struct {
	// IdempotencyKey identifies the payment; the order id.
	IdempotencyKey string
	// CardToken is the gateway's token for the customer's card.
	CardToken string
	// AmountCents is the amount in minor units of Currency.
	AmountCents int64
	// Currency is an ISO 4217 code.
	Currency string
}

// Authorization is the gateway's answer to Authorize.
type Authorization struct {
	// ChargeID is the gateway's id of the charge (also for declines).
	ChargeID string
	// Approved tells an approval from a decline.
	Approved bool
	// Code is the authorization code of an approval.
	Code string
	// DeclineReason says why a decline happened, e.g. "card_declined".
	DeclineReason string
}

// OperationRequest asks to capture, void or refund an authorization.
type OperationRequest struct {
	// IdempotencyKey is the authorization's key (the order id).
	IdempotencyKey string
	// ChargeID is the authorization's charge id.
	ChargeID string
}

// Receipt confirms a capture, void or refund.
type Receipt struct {
	// ChargeID is the charge the operation applied to.
	ChargeID string
	// AmountCents and Currency are the amount moved (or released).
	AmountCents int64
	Currency    string
}

// The gateway's errors; Is-compare against them.
var (
	// ErrTimeout: no answer in time. The call may or may not have taken
	// effect; retry it with the same key to learn which.
	ErrTimeout = errors.New("gateway: timeout")
	// ErrUnavailable: the gateway cannot take calls now.
	ErrUnavailable = errors.New("gateway: unavailable")
	// ErrRejected: the request is invalid (unknown authorization, a key
	// reused with other parameters, an operation the charge's state does
	// not allow).
	ErrRejected = errors.New("gateway: request rejected")
	// ErrNoAuthorization: a follow-up operation for a key the gateway
	// holds no authorization under. It wraps ErrRejected too.
	ErrNoAuthorization = errors.New("no authorization for the key")
)

// Transient reports whether err is worth retrying with the same key.
func Transient(err error) bool {
	return errors.Is(err, ErrTimeout) || errors.Is(err, ErrUnavailable)
}
