package store

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Keys are kept this long (Stripe: 24 hours); an older key is new again.
const KeyTTL = 24 * time.Hour

// Response is a stored answer to replay.
type Response struct {
	Status   int
	Body     []byte
	Location string
}

// Key is what TakeKey found for an Idempotency-Key.
type Key struct {
	// InFlight: another transaction holds the key right now.
	InFlight bool
	// Mismatch: the key completed for a request with another body.
	Mismatch bool
	// Replay is the completed first request's response.
	Replay *Response
}

// TakeKey takes key for the rest of tx (a transaction-scoped advisory
// lock, so a request that dies lets go of it at once) and looks up a
// completed request with it, in one round trip. Unless InFlight, Mismatch
// or Replay is set, the caller does the work and stores its response with
// QueueStoreKey in the same tx.
func TakeKey(ctx context.Context, tx pgx.Tx, key string, fingerprint []byte) (Key, error) {
	const q = `
SELECT pg_try_advisory_xact_lock(hashtextextended('shopflow.idempotency.' || $1, 0)),
       k.fingerprint, k.response_status, k.response_body, k.location
FROM (SELECT 1) AS one
LEFT JOIN idempotency_keys k ON k.key = $1 AND k.created_at > now() - $2::interval`
	var (
		locked   bool
		fp       []byte
		status   *int
		body     []byte
		location *string
	)
	if err := tx.QueryRow(ctx, q, key, KeyTTL).Scan(&locked, &fp, &status, &body, &location); err != nil {
		return Key{}, fmt.Errorf("take idempotency key: %w", err)
	}
	switch {
	case !locked:
		return Key{InFlight: true}, nil
	case status == nil:
		return Key{}, nil // new (or expired): ours
	case !bytes.Equal(fp, fingerprint):
		return Key{Mismatch: true}, nil
	}
	r := &Response{Status: *status, Body: body}
	if location != nil {
		r.Location = *location
	}
	return Key{Replay: r}, nil
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
