package gateway

import "testing"

func TestDecide(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		token    string
		amount   int64
		currency string
		attempt  int
		want     verdict
	}{
		{"visa approves", TokenVisa, 3998, "USD", 1, verdict{approve: true}},
		{"visa at the limit approves", TokenVisa, 1_000_000, "USD", 1, verdict{approve: true}},
		{"visa over the limit declines", TokenVisa, 1_000_001, "USD", 1, verdict{reason: ReasonAmountExceedsLimit}},
		{"yen limit is in yen", TokenVisa, 10_001, "JPY", 1, verdict{reason: ReasonAmountExceedsLimit}},
		{"yen under the limit approves", TokenVisa, 10_000, "JPY", 1, verdict{approve: true}},
		{"declined token declines", TokenDeclined, 100, "USD", 1, verdict{reason: ReasonCardDeclined}},
		{"declined token declines on every attempt", TokenDeclined, 100, "USD", 3, verdict{reason: ReasonCardDeclined}},
		{"unknown token declines", "tok_nope", 100, "USD", 1, verdict{reason: ReasonUnknownCard}},
		{"unsupported currency declines", TokenVisa, 100, "XTS", 1, verdict{reason: ReasonUnsupportedCurrency}},
		{"flaky times out first", TokenFlaky, 100, "USD", 1, verdict{timeout: true}},
		{"flaky times out second", TokenFlaky, 100, "USD", 2, verdict{timeout: true}},
		{"flaky approves third", TokenFlaky, 100, "USD", 3, verdict{approve: true}},
		{"flaky over the limit declines after its timeouts", TokenFlaky, 2_000_000, "USD", 3, verdict{reason: ReasonAmountExceedsLimit}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := decide(tt.token, tt.amount, tt.currency, tt.attempt); got != tt.want {
				t.Errorf("decide = %+v, want %+v", got, tt.want)
			}
		})
	}
}
