package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shopflow/shopflow/services/order/internal/order"
)

// Keys are kept this long (Stripe: 24 hours); an older key is new again.
const KeyTTL = 24 * time.Hour

// Response is a stored answer to replay.
type Response struct {
	Status   int
	Body     []byte
	Location string
}

// Key is what LookupKey found for an Idempotency-Key.
type Key struct {
	// Mismatch: the key completed for a request with another body.
	Mismatch bool
	// Replay is the completed first request's response.
	Replay *Response
}

// SQLSTATEs take_idempotency_key and check_prices raise (migration 003).
const (
	codeKeyInFlight   = "SF409"
	codeKeyUsed       = "SF200"
	codePricesChanged = "SF412"
)

// QueueTakeKey adds to b, as its first statement, the one that takes key
// for the rest of the batch's transaction: a transaction-scoped advisory
// lock, so a request that dies lets go of it at once. When another
// transaction holds the key, or a request with it completed within
// KeyTTL, the statement fails, and with it the whole batch, so nothing
// after it is stored; KeyTaken tells which.
func QueueTakeKey(b *pgx.Batch, key string) {
	b.Queue(`SELECT take_idempotency_key($1, $2::interval)`, key, KeyTTL)
}

// KeyTaken reports why a batch that began with QueueTakeKey failed:
// inFlight when another transaction holds the key, used when a request
// with it completed (LookupKey reads its answer). Both false: err is
// something else.
func KeyTaken(err error) (inFlight, used bool) {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false, false
	}
	return pgErr.Code == codeKeyInFlight, pgErr.Code == codeKeyUsed
}

// QueueCheckPrices adds to b the statement that fails the batch unless
// every line of o matches the catalog (active, name, price, currency).
func QueueCheckPrices(b *pgx.Batch, o order.Order) {
	skus := make([]string, len(o.Lines))
	names := make([]string, len(o.Lines))
	prices := make([]int64, len(o.Lines))
	for i, l := range o.Lines {
		skus[i], names[i], prices[i] = l.SKU, l.Name, l.UnitPriceCents
	}
	b.Queue(`SELECT check_prices($1, $2, $3, $4)`, skus, names, prices, o.Currency)
}

// PricesChanged reports whether err is check_prices failing the batch.
func PricesChanged(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == codePricesChanged
}

// LookupKey reads the completed request stored for key: its response to
// replay when fingerprint matches, Mismatch when it does not, and
// ErrNotFound when there is none within KeyTTL (it expired or was pruned
// since the key was found used).
func LookupKey(ctx context.Context, db DB, key string, fingerprint []byte) (Key, error) {
	const q = `
SELECT fingerprint, response_status, response_body, coalesce(location, '')
FROM idempotency_keys WHERE key = $1 AND created_at > now() - $2::interval`
	var (
		fp []byte
		r  Response
	)
	err := db.QueryRow(ctx, q, key, KeyTTL).Scan(&fp, &r.Status, &r.Body, &r.Location)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return Key{}, ErrNotFound
	case err != nil:
		return Key{}, fmt.Errorf("read idempotency key: %w", err)
	case !bytes.Equal(fp, fingerprint):
		return Key{Mismatch: true}, nil
	}
	return Key{Replay: &r}, nil
}

// QueueStoreKey adds to b the statement that stores the response for key
// (replacing an expired one), to run in the transaction that did the work.
func QueueStoreKey(b *pgx.Batch, key string, fingerprint []byte, r Response) {
	const q = `
INSERT INTO idempotency_keys (key, fingerprint, response_status, response_body, location)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (key) DO UPDATE SET fingerprint = EXCLUDED.fingerprint, response_status = EXCLUDED.response_status,
    response_body = EXCLUDED.response_body, location = EXCLUDED.location, created_at = now(), updated_at = now()`
	b.Queue(q, key, fingerprint, r.Status, r.Body, r.Location)
}

// PruneKeys deletes keys older than KeyTTL and returns how many.
func PruneKeys(ctx context.Context, db DB) (int64, error) {
	tag, err := db.Exec(ctx, `DELETE FROM idempotency_keys WHERE created_at < now() - $1::interval`, KeyTTL)
	if err != nil {
		return 0, fmt.Errorf("prune idempotency keys: %w", err)
	}
	return tag.RowsAffected(), nil
}
