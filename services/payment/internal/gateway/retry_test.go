package gateway

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// script answers each call with the next error (nil: success).
type script struct {
	errs  []error
	calls int
}

func (s *script) next() error {
	s.calls++
	if s.calls <= len(s.errs) {
		return s.errs[s.calls-1]
	}
	return nil
}

func (s *script) Authorize(context.Context, AuthorizeRequest) (Authorization, error) {
	if err := s.next(); err != nil {
		return Authorization{}, err
	}
	return Authorization{ChargeID: "ch_1", Approved: true}, nil
}

func (s *script) Capture(context.Context, OperationRequest) (Receipt, error) {
	return Receipt{}, s.next()
}
func (s *script) Void(context.Context, OperationRequest) (Receipt, error) { return Receipt{}, s.next() }
func (s *script) Refund(context.Context, OperationRequest) (Receipt, error) {
	return Receipt{}, s.next()
}

func TestWithRetries(t *testing.T) {
	timeout := fmt.Errorf("%w: authorize", ErrTimeout)
	down := fmt.Errorf("%w: refused", ErrUnavailable)
	rejected := fmt.Errorf("%w: key reused", ErrRejected)
	for _, tc := range []struct {
		name      string
		errs      []error
		wantCalls int
		wantErr   error
	}{
		{"success at once", nil, 1, nil},
		{"two timeouts absorbed", []error{timeout, down}, 3, nil},
		{"three faults: the last one returned", []error{timeout, timeout, down}, 3, ErrUnavailable},
		{"a rejection is not retried", []error{rejected}, 1, ErrRejected},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &script{errs: tc.errs}
			a, err := WithRetries(s, 2, time.Millisecond).Authorize(context.Background(), AuthorizeRequest{IdempotencyKey: "o1"})
			if s.calls != tc.wantCalls {
				t.Errorf("%d calls, want %d", s.calls, tc.wantCalls)
			}
			if (tc.wantErr == nil) != (err == nil) || (tc.wantErr != nil && !errors.Is(err, tc.wantErr)) {
				t.Errorf("err = %v, want %v", err, tc.wantErr)
			}
			if err == nil && !a.Approved {
				t.Errorf("answer %+v lost", a)
			}
		})
	}
	for name, call := range map[string]func(Gateway) error{
		"capture": func(g Gateway) error { _, err := g.Capture(context.Background(), OperationRequest{}); return err },
		"void":    func(g Gateway) error { _, err := g.Void(context.Background(), OperationRequest{}); return err },
		"refund":  func(g Gateway) error { _, err := g.Refund(context.Background(), OperationRequest{}); return err },
	} {
		s := &script{errs: []error{timeout}}
		if err := call(WithRetries(s, 2, time.Millisecond)); err != nil || s.calls != 2 {
			t.Errorf("%s: %v after %d calls, want success after 2", name, err, s.calls)
		}
	}

	// A caller that gives up stops the waiting at once.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s := &script{errs: []error{timeout, timeout}}
	start := time.Now()
	if _, err := WithRetries(s, 2, time.Hour).Authorize(ctx, AuthorizeRequest{}); !errors.Is(err, ErrTimeout) || s.calls != 1 {
		t.Errorf("cancelled: %v after %d calls", err, s.calls)
	}
	if time.Since(start) > time.Minute {
		t.Error("waited out the backoff after the caller gave up")
	}
}
