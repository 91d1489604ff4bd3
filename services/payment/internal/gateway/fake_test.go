package gateway_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shopflow/shopflow/pkg/platform/testenv"
	"github.com/shopflow/shopflow/services/payment"
	"github.com/shopflow/shopflow/services/payment/internal/gateway"
)

// ledgerRow is one row of the fake's gateway_charges table.
type ledgerRow struct {
	op, outcome string
	attempts    int
	chargeID    string
}

func ledger(t *testing.T, pool *pgxpool.Pool, key string) map[string]ledgerRow {
	t.Helper()
	rows, err := pool.Query(context.Background(),
		`SELECT operation, outcome, attempts, charge_id FROM gateway_charges WHERE idempotency_key = $1`, key)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]ledgerRow{}
	for rows.Next() {
		var r ledgerRow
		if err := rows.Scan(&r.op, &r.outcome, &r.attempts, &r.chargeID); err != nil {
			t.Fatal(err)
		}
		out[r.op] = r
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func auth(key, token string, amount int64) gateway.AuthorizeRequest {
	return gateway.AuthorizeRequest{IdempotencyKey: key, CardToken: token, AmountCents: amount, Currency: "USD"}
}

// TestFake runs the fake gateway against its ledger in PostgreSQL; each
// subtest uses its own idempotency keys.
func TestFake(t *testing.T) {
	t.Parallel()
	pool := testenv.Pool(t, payment.Schema, payment.Migrations())
	fake := gateway.NewFake(pool, gateway.FakeConfig{})
	ctx := context.Background()

	t.Run("authorize outcomes by token and amount", func(t *testing.T) {
		t.Parallel()
		tests := []struct {
			token    string
			amount   int64
			approved bool
			reason   string
		}{
			{gateway.TokenVisa, 3998, true, ""},
			{gateway.TokenDeclined, 3998, false, gateway.ReasonCardDeclined},
			{gateway.TokenVisa, 1_000_001, false, gateway.ReasonAmountExceedsLimit},
			{"tok_unknown", 100, false, gateway.ReasonUnknownCard},
		}
		for _, tt := range tests {
			key := uuid.NewString()
			a, err := fake.Authorize(ctx, auth(key, tt.token, tt.amount))
			if err != nil {
				t.Fatalf("%s %d: %v", tt.token, tt.amount, err)
			}
			if a.Approved != tt.approved || a.DeclineReason != tt.reason || (a.Code != "") != tt.approved || a.ChargeID == "" {
				t.Errorf("%s %d = %+v, want approved %v reason %q", tt.token, tt.amount, a, tt.approved, tt.reason)
			}
			want := "declined"
			if tt.approved {
				want = "approved"
			}
			if got := ledger(t, pool, key)["authorize"].outcome; got != want {
				t.Errorf("%s %d: ledger outcome %q, want %q", tt.token, tt.amount, got, want)
			}
		}
	})

	t.Run("a repeated authorize returns the stored answer without charging again", func(t *testing.T) {
		t.Parallel()
		key := uuid.NewString()
		first, err := fake.Authorize(ctx, auth(key, gateway.TokenVisa, 500))
		if err != nil {
			t.Fatal(err)
		}
		again, err := fake.Authorize(ctx, auth(key, gateway.TokenVisa, 500))
		if err != nil {
			t.Fatal(err)
		}
		if again != first {
			t.Errorf("second answer %+v, want the first %+v", again, first)
		}
		l := ledger(t, pool, key)
		if len(l) != 1 || l["authorize"].attempts != 2 || l["authorize"].chargeID != first.ChargeID {
			t.Errorf("ledger %+v, want one authorization with 2 attempts", l)
		}
	})

	t.Run("concurrent authorizes with one key charge once", func(t *testing.T) {
		t.Parallel()
		key := uuid.NewString()
		const n = 8
		answers := make([]gateway.Authorization, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { answers[i], errs[i] = fake.Authorize(ctx, auth(key, gateway.TokenVisa, 700)) })
		}
		wg.Wait()
		for i := range n {
			if errs[i] != nil {
				t.Fatalf("call %d: %v", i, errs[i])
			}
			if answers[i] != answers[0] {
				t.Errorf("call %d answered %+v, call 0 %+v", i, answers[i], answers[0])
			}
		}
		if l := ledger(t, pool, key); l["authorize"].attempts != n {
			t.Errorf("ledger %+v, want %d attempts on one row", l, n)
		}
	})

	t.Run("flaky times out twice per key, then approves", func(t *testing.T) {
		t.Parallel()
		key := uuid.NewString()
		for i := 1; i <= gateway.FlakyTimeouts; i++ {
			_, err := fake.Authorize(ctx, auth(key, gateway.TokenFlaky, 900))
			if !errors.Is(err, gateway.ErrTimeout) || !gateway.Transient(err) {
				t.Fatalf("attempt %d: %v, want a transient timeout", i, err)
			}
			if got := ledger(t, pool, key)["authorize"]; got.outcome != "pending" || got.attempts != i {
				t.Fatalf("after attempt %d ledger %+v, want pending with %d attempts", i, got, i)
			}
		}
		a, err := fake.Authorize(ctx, auth(key, gateway.TokenFlaky, 900))
		if err != nil || !a.Approved {
			t.Fatalf("third attempt = %+v, %v; want approved", a, err)
		}
		if got := ledger(t, pool, key)["authorize"]; got.outcome != "approved" || got.attempts != 3 {
			t.Errorf("ledger %+v", got)
		}
	})

	t.Run("a key reused with other parameters is rejected", func(t *testing.T) {
		t.Parallel()
		key := uuid.NewString()
		if _, err := fake.Authorize(ctx, auth(key, gateway.TokenVisa, 500)); err != nil {
			t.Fatal(err)
		}
		_, err := fake.Authorize(ctx, auth(key, gateway.TokenVisa, 501))
		if !errors.Is(err, gateway.ErrRejected) || gateway.Transient(err) {
			t.Errorf("reuse = %v, want ErrRejected", err)
		}
		if _, err := fake.Authorize(ctx, gateway.AuthorizeRequest{CardToken: gateway.TokenVisa, AmountCents: 1, Currency: "USD"}); !errors.Is(err, gateway.ErrRejected) {
			t.Errorf("empty key = %v, want ErrRejected", err)
		}
	})

	t.Run("capture, void and refund follow the charge's state", func(t *testing.T) {
		t.Parallel()
		authorized := func() (string, string) {
			key := uuid.NewString()
			a, err := fake.Authorize(ctx, auth(key, gateway.TokenVisa, 1200))
			if err != nil || !a.Approved {
				t.Fatalf("authorize: %+v %v", a, err)
			}
			return key, a.ChargeID
		}
		op := func(name string, key, charge string) error {
			req := gateway.OperationRequest{IdempotencyKey: key, ChargeID: charge}
			var r gateway.Receipt
			var err error
			switch name {
			case "capture":
				r, err = fake.Capture(ctx, req)
			case "void":
				r, err = fake.Void(ctx, req)
			case "refund":
				r, err = fake.Refund(ctx, req)
			}
			if err == nil && (r.ChargeID != charge || r.AmountCents != 1200 || r.Currency != "USD") {
				t.Errorf("%s receipt %+v", name, r)
			}
			return err
		}
		tests := []struct {
			name string
			ops  []string
			ok   []bool
		}{
			{"capture then refund", []string{"capture", "refund"}, []bool{true, true}},
			{"capture twice is one capture", []string{"capture", "capture"}, []bool{true, true}},
			{"void", []string{"void", "void"}, []bool{true, true}},
			{"no void after capture", []string{"capture", "void"}, []bool{true, false}},
			{"no capture after void", []string{"void", "capture"}, []bool{true, false}},
			{"no refund without capture", []string{"refund"}, []bool{false}},
			{"no refund after void", []string{"void", "refund"}, []bool{true, false}},
		}
		for _, tt := range tests {
			key, charge := authorized()
			for i, name := range tt.ops {
				err := op(name, key, charge)
				if tt.ok[i] && err != nil {
					t.Errorf("%s: %s: %v", tt.name, name, err)
				}
				if !tt.ok[i] && !errors.Is(err, gateway.ErrRejected) {
					t.Errorf("%s: %s = %v, want ErrRejected", tt.name, name, err)
				}
			}
			for _, r := range ledger(t, pool, key) {
				if r.op != "authorize" && r.outcome != "approved" {
					t.Errorf("%s: ledger row %+v", tt.name, r)
				}
			}
		}
		if l := func() map[string]ledgerRow {
			key, charge := authorized()
			_ = op("capture", key, charge)
			_ = op("capture", key, charge)
			return ledger(t, pool, key)
		}(); l["capture"].attempts != 2 || len(l) != 2 {
			t.Errorf("two captures: ledger %+v, want one capture row with 2 attempts", l)
		}
	})

	t.Run("a capture and a void racing on one charge: exactly one wins", func(t *testing.T) {
		t.Parallel()
		for range 20 {
			key := uuid.NewString()
			a, err := fake.Authorize(ctx, auth(key, gateway.TokenVisa, 500))
			if err != nil || !a.Approved {
				t.Fatalf("authorize: %+v %v", a, err)
			}
			req := gateway.OperationRequest{IdempotencyKey: key, ChargeID: a.ChargeID}
			errs := make([]error, 4)
			var wg sync.WaitGroup
			for i := range errs {
				wg.Go(func() {
					if i%2 == 0 {
						_, errs[i] = fake.Capture(ctx, req)
					} else {
						_, errs[i] = fake.Void(ctx, req)
					}
				})
			}
			wg.Wait()
			l := ledger(t, pool, key)
			_, captured := l["capture"]
			_, voided := l["void"]
			if captured == voided {
				t.Fatalf("capture and void raced: ledger %+v (errors %v); want exactly one of them", l, errs)
			}
			for i, err := range errs {
				winner := (i%2 == 0) == captured
				if winner && err != nil || !winner && !errors.Is(err, gateway.ErrRejected) {
					t.Errorf("call %d (capture: %v) = %v; want success for the operation that won, ErrRejected for the other", i, i%2 == 0, err)
				}
			}
		}
	})

	t.Run("calls made at once each get their own answer, a refused one fails alone", func(t *testing.T) {
		t.Parallel()
		const n = 40
		keys := make([]string, n)
		auths := make([]gateway.Authorization, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			keys[i] = uuid.NewString()
			token := gateway.TokenVisa
			if i%4 == 1 {
				token = gateway.TokenDeclined
			}
			wg.Go(func() { auths[i], errs[i] = fake.Authorize(ctx, auth(keys[i], token, int64(100+i))) })
		}
		// The database refuses this one (a key too long for the ledger's
		// primary key index, 2704 bytes): it must not take the calls
		// sharing its statement down with it.
		long := make([]byte, 9000)
		_, _ = rand.Read(long)
		var badErr error
		wg.Go(func() {
			_, badErr = fake.Authorize(ctx, auth(base64.StdEncoding.EncodeToString(long), gateway.TokenVisa, 100))
		})
		wg.Wait()
		if !errors.Is(badErr, gateway.ErrUnavailable) {
			t.Errorf("refused call = %v, want ErrUnavailable", badErr)
		}
		charges := map[string]bool{}
		for i := range n {
			if errs[i] != nil {
				t.Fatalf("authorize %d: %v", i, errs[i])
			}
			if auths[i].Approved != (i%4 != 1) || charges[auths[i].ChargeID] {
				t.Errorf("authorize %d = %+v (charge ids so far %d)", i, auths[i], len(charges))
			}
			charges[auths[i].ChargeID] = true
			if l := ledger(t, pool, keys[i])["authorize"]; l.chargeID != auths[i].ChargeID || l.attempts != 1 {
				t.Errorf("authorize %d: ledger %+v, answer %+v", i, l, auths[i])
			}
		}
		receipts := make([]gateway.Receipt, n)
		for i := range n {
			wg.Go(func() {
				req := gateway.OperationRequest{IdempotencyKey: keys[i], ChargeID: auths[i].ChargeID}
				if i%2 == 0 {
					receipts[i], errs[i] = fake.Capture(ctx, req)
				} else {
					receipts[i], errs[i] = fake.Void(ctx, req)
				}
			})
		}
		wg.Wait()
		for i := range n {
			switch {
			case i%4 == 1:
				if !errors.Is(errs[i], gateway.ErrRejected) {
					t.Errorf("operation %d on a declined charge = %v, want ErrRejected", i, errs[i])
				}
			case errs[i] != nil || receipts[i].ChargeID != auths[i].ChargeID || receipts[i].AmountCents != int64(100+i):
				t.Errorf("operation %d = %+v, %v; want the receipt of charge %s, %d cents", i, receipts[i], errs[i], auths[i].ChargeID, 100+i)
			}
		}
	})

	t.Run("operations on what the gateway never authorized are rejected", func(t *testing.T) {
		t.Parallel()
		if _, err := fake.Capture(ctx, gateway.OperationRequest{IdempotencyKey: uuid.NewString()}); !errors.Is(err, gateway.ErrRejected) {
			t.Errorf("capture unknown = %v", err)
		}
		key := uuid.NewString()
		if _, err := fake.Authorize(ctx, auth(key, gateway.TokenDeclined, 100)); err != nil {
			t.Fatal(err)
		}
		if _, err := fake.Void(ctx, gateway.OperationRequest{IdempotencyKey: key}); !errors.Is(err, gateway.ErrRejected) {
			t.Errorf("void declined = %v", err)
		}
		key2 := uuid.NewString()
		if _, err := fake.Authorize(ctx, auth(key2, gateway.TokenVisa, 100)); err != nil {
			t.Fatal(err)
		}
		if _, err := fake.Capture(ctx, gateway.OperationRequest{IdempotencyKey: key2, ChargeID: "ch_other"}); !errors.Is(err, gateway.ErrRejected) {
			t.Errorf("capture with a foreign charge id = %v", err)
		}
	})

	t.Run("latency: a caller that gives up first sees a timeout and nothing is charged", func(t *testing.T) {
		t.Parallel()
		slow := gateway.NewFake(pool, gateway.FakeConfig{Latency: 200 * time.Millisecond})
		key := uuid.NewString()
		short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		defer cancel()
		_, err := slow.Authorize(short, auth(key, gateway.TokenVisa, 100))
		if !errors.Is(err, gateway.ErrTimeout) {
			t.Fatalf("Authorize = %v, want ErrTimeout", err)
		}
		if l := ledger(t, pool, key); len(l) != 0 {
			t.Errorf("ledger %+v after a timeout before the call arrived", l)
		}
		start := time.Now()
		if a, err := slow.Authorize(ctx, auth(key, gateway.TokenVisa, 100)); err != nil || !a.Approved {
			t.Fatalf("Authorize = %+v, %v", a, err)
		}
		if d := time.Since(start); d < 200*time.Millisecond {
			t.Errorf("Authorize took %v, want at least the 200ms latency", d)
		}
	})
}

// TestFakeUnavailable: when the gateway's own store fails, callers see a
// transient ErrUnavailable, not a rejection.
func TestFakeUnavailable(t *testing.T) {
	t.Parallel()
	pool := testenv.Pool(t, payment.Schema, payment.Migrations())
	fake := gateway.NewFake(pool, gateway.FakeConfig{})
	pool.Close()
	_, err := fake.Authorize(context.Background(), auth(uuid.NewString(), gateway.TokenVisa, 100))
	if !errors.Is(err, gateway.ErrUnavailable) || !gateway.Transient(err) {
		t.Errorf("Authorize on a closed ledger = %v, want ErrUnavailable", err)
	}
}

// A request the ledger cannot store (a U+0000 in the card token, which
// PostgreSQL's text refuses) is rejected, and the calls made beside it go
// through: it was answered ErrUnavailable, which the payment service
// retries as an outage for five minutes before it dead-letters the event.
func TestFakeRejectsWhatItsLedgerCannotStore(t *testing.T) {
	t.Parallel()
	pool := testenv.Pool(t, payment.Schema, payment.Migrations())
	fake := gateway.NewFake(pool, gateway.FakeConfig{})
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		token := gateway.TokenVisa
		if i == 0 {
			token += "\x00"
		}
		wg.Go(func() { _, errs[i] = fake.Authorize(ctx, auth(uuid.NewString(), token, 100)) })
	}
	wg.Wait()
	if err := errs[0]; !errors.Is(err, gateway.ErrRejected) || gateway.Transient(err) {
		t.Errorf("Authorize with a NUL in the token = %v, want ErrRejected", err)
	}
	for i, err := range errs[1:] {
		if err != nil {
			t.Errorf("Authorize %d, beside it: %v", i+1, err)
		}
	}
	key := uuid.NewString()
	if _, err := fake.Capture(ctx, gateway.OperationRequest{IdempotencyKey: key, ChargeID: "ch\x00"}); !errors.Is(err, gateway.ErrRejected) {
		t.Errorf("Capture with a NUL in the charge id = %v, want ErrRejected", err)
	}
}
