package gateway

import (
	"context"
	"time"
)

// WithRetries returns gw with each call that fails transiently (Transient:
// a timeout, the gateway unavailable) made again, with the same
// idempotency key, up to retries more times, after base, 2·base, ...
// as a gateway's client library does. A brief fault is absorbed in the
// call, where the consumer would otherwise roll its batch back and hold
// the order's partition for its backoff; a longer one still ends in the
// error, and the consumer's retries take over.
func WithRetries(gw Gateway, retries int, base time.Duration) Gateway {
	return retrying{gw: gw, retries: retries, base: base}
}

type retrying struct {
	gw      Gateway
	retries int
	base    time.Duration
}

func retry[T any](ctx context.Context, r retrying, call func() (T, error)) (T, error) {
	v, err := call()
	for i, wait := 0, r.base; i < r.retries && err != nil && Transient(err); i, wait = i+1, 2*wait {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return v, err
		case <-t.C:
		}
		v, err = call()
	}
	return v, err
}

func (r retrying) Authorize(ctx context.Context, req AuthorizeRequest) (Authorization, error) {
	return retry(ctx, r, func() (Authorization, error) { return r.gw.Authorize(ctx, req) })
}

func (r retrying) Capture(ctx context.Context, req OperationRequest) (Receipt, error) {
	return retry(ctx, r, func() (Receipt, error) { return r.gw.Capture(ctx, req) })
}

func (r retrying) Void(ctx context.Context, req OperationRequest) (Receipt, error) {
	return retry(ctx, r, func() (Receipt, error) { return r.gw.Void(ctx, req) })
}

func (r retrying) Refund(ctx context.Context, req OperationRequest) (Receipt, error) {
	return retry(ctx, r, func() (Receipt, error) { return r.gw.Refund(ctx, req) })
}
