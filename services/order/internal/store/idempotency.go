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
	// Replayed is set on an answer read back for a retry (LookupKey),
	// never stored: the HTTP layer says so (Idempotent-Replayed).
	Replayed bool
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

// QueueTakeKeys adds to b, as its first statement, the one that takes
// keys (distinct) for the rest of the batch's transaction: a
// transaction-scoped advisory lock each, so a request that dies lets go
// of its key at once. When another transaction holds one of them, or a
// request with one completed within KeyTTL, the statement fails, and with
// it the whole batch, so nothing after it is stored; KeyTaken tells which.
func QueueTakeKeys(b *pgx.Batch, keys ...string) {
	if len(keys) == 0 {
		return
	}
	b.Queue(`SELECT take_idempotency_key(k, $2::interval) FROM unnest($1::text[]) AS k`, keys, KeyTTL)
}

// KeyTaken reports why a batch that began with QueueTakeKeys failed:
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

// QueueCheckPrices adds to b the statements that fail the batch unless
// every line of os matches the catalog (active, name, price, currency):
// one per currency among them.
func QueueCheckPrices(b *pgx.Batch, os ...order.Order) {
	type lines struct {
		skus, names []string
		prices      []int64
	}
	var (
		byCur = map[string]*lines{}
		curs  []string
	)
	for _, o := range os {
		ls := byCur[o.Currency]
		if ls == nil {
			ls = &lines{}
			byCur[o.Currency] = ls
			curs = append(curs, o.Currency)
		}
		for _, l := range o.Lines {
			ls.skus, ls.names, ls.prices = append(ls.skus, l.SKU), append(ls.names, l.Name), append(ls.prices, l.UnitPriceCents)
		}
	}
	for _, c := range curs {
		ls := byCur[c]
		b.Queue(`SELECT check_prices($1, $2, $3, $4)`, ls.skus, ls.names, ls.prices, c)
	}
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
	r.Replayed = true
	return Key{Replay: &r}, nil
}

// KeyLocation returns the Location of the order a completed request with
// key placed (every stored answer is a placement's 201), or ErrNotFound
// when none completed within KeyTTL.
func KeyLocation(ctx context.Context, db DB, key string) (string, error) {
	const q = `SELECT coalesce(location, '') FROM idempotency_keys WHERE key = $1 AND created_at > now() - $2::interval`
	var loc string
	err := db.QueryRow(ctx, q, key, KeyTTL).Scan(&loc)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return "", ErrNotFound
	case err != nil:
		return "", fmt.Errorf("read idempotency key: %w", err)
	}
	return loc, nil
}

// StoredKey is a completed request's Idempotency-Key, the fingerprint of
// its body and its response, to replay.
type StoredKey struct {
	Key         string
	Fingerprint []byte
	Response    Response
}

// QueueStoreKeys adds to b the statement that stores the responses for
// ks, distinct keys (replacing expired ones), to run in the transaction
// that did the work.
func QueueStoreKeys(b *pgx.Batch, ks ...StoredKey) {
	if len(ks) == 0 {
		return
	}
	keys, fps, bodies, locs := make([]string, len(ks)), make([][]byte, len(ks)), make([][]byte, len(ks)), make([]string, len(ks))
	statuses := make([]int32, len(ks))
	for i, k := range ks {
		keys[i], fps[i], statuses[i], bodies[i], locs[i] = k.Key, k.Fingerprint, int32(k.Response.Status), k.Response.Body, k.Response.Location
	}
	const q = `
INSERT INTO idempotency_keys (key, fingerprint, response_status, response_body, location)
SELECT * FROM unnest($1::text[], $2::bytea[], $3::int[], $4::bytea[], $5::text[])
ON CONFLICT (key) DO UPDATE SET fingerprint = EXCLUDED.fingerprint, response_status = EXCLUDED.response_status,
    response_body = EXCLUDED.response_body, location = EXCLUDED.location, created_at = now(), updated_at = now()`
	b.Queue(q, keys, fps, statuses, bodies, locs)
}

// PruneKeys deletes keys older than KeyTTL and returns how many.
func PruneKeys(ctx context.Context, db DB) (int64, error) {
	tag, err := db.Exec(ctx, `DELETE FROM idempotency_keys WHERE created_at < now() - $1::interval`, KeyTTL)
	if err != nil {
		return 0, fmt.Errorf("prune idempotency keys: %w", err)
	}
	return tag.RowsAffected(), nil
}
