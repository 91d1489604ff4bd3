package payment

import (
	"errors"
	"testing"
)

func TestDecisions(t *testing.T) {
	t.Parallel()
	with := func(s Status) *Payment { return &Payment{OrderID: "o1", Status: s} }
	tests := []struct {
		name       string
		decide     func(*Payment) Decision
		p          *Payment
		step       Step
		unexpected bool
	}{
		{"placed new", OnPlaced, nil, Authorize, false},
		{"placed again after authorize", OnPlaced, with(StatusAuthorized), Skip, false},
		{"placed again after decline", OnPlaced, with(StatusDeclined), Skip, false},
		{"placed after cancel tombstone", OnPlaced, with(StatusCancelled), Skip, true},
		{"confirmed authorized", OnConfirmed, with(StatusAuthorized), Capture, false},
		{"confirmed captured", OnConfirmed, with(StatusCaptured), Skip, false},
		{"confirmed declined", OnConfirmed, with(StatusDeclined), Skip, true},
		{"confirmed unknown", OnConfirmed, nil, Skip, true},
		{"confirmed voided", OnConfirmed, with(StatusVoided), Skip, true},
		{"confirmed cancelled", OnConfirmed, with(StatusCancelled), Skip, true},
		{"cancelled authorized", OnCancelled, with(StatusAuthorized), Void, false},
		{"cancelled captured", OnCancelled, with(StatusCaptured), Refund, false},
		{"cancelled unknown", OnCancelled, nil, Tombstone, false},
		{"cancelled declined", OnCancelled, with(StatusDeclined), Skip, false},
		{"cancelled voided", OnCancelled, with(StatusVoided), Skip, false},
		{"cancelled refunded", OnCancelled, with(StatusRefunded), Skip, false},
		{"cancelled twice", OnCancelled, with(StatusCancelled), Skip, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := tt.decide(tt.p)
			if d.Step != tt.step || d.Unexpected != tt.unexpected {
				t.Errorf("step %v unexpected %v, want %v %v (%q)", d.Step, d.Unexpected, tt.step, tt.unexpected, d.Detail)
			}
			if d.Step != Authorize && d.Detail == "" {
				t.Error("a decision other than Authorize must explain itself for the history")
			}
		})
	}
}

func TestCheckAmount(t *testing.T) {
	t.Parallel()
	tests := []struct {
		amount   int64
		currency string
		want     error
	}{
		{1, "USD", nil},
		{1_000_000_00, "EUR", nil},
		{500, "JPY", nil},
		{0, "USD", ErrInvalidAmount},
		{-5, "USD", ErrInvalidAmount},
		{100, "XXX", ErrUnsupportedCurrency},
		{100, "usd", ErrUnsupportedCurrency},
		{100, "", ErrUnsupportedCurrency},
	}
	for _, tt := range tests {
		err := CheckAmount(tt.amount, tt.currency)
		if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
			t.Errorf("CheckAmount(%d, %q) = %v, want %v", tt.amount, tt.currency, err, tt.want)
		}
	}
}

func TestStatusOf(t *testing.T) {
	t.Parallel()
	if got := StatusOf(nil); got != StatusNone {
		t.Errorf("StatusOf(nil) = %q", got)
	}
	if got := StatusOf(&Payment{Status: StatusCaptured}); got != StatusCaptured {
		t.Errorf("StatusOf(captured) = %q", got)
	}
}
