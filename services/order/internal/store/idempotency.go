package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Claim is the outcome of claiming an Idempotency-Key.
type Claim struct {
	// Token is set when this request now holds the key and must do the
	// work; CompleteKey needs it.
	Token uuid.UUID
	// Otherwise one of these says why not.
	Mismatch bool // the key was used with a different request body
	InFlight bool // the first request with the key is still running
	// Replay is the stored response of the completed first request.
	Replay *Response
}

// Response is a stored answer to replay.
type Response struct {
	Status   int
	Body     []byte
	Location string
}

// Keys are kept this long (Stripe: 24 hours); an older key is new again.
const KeyTTL = 24 * time.Hour

// ClaimKey claims key for a request whose body hashes to fingerprint. An
// expired key, or one left in flight by a request that died more than
// abandonAfter ago, is taken over.
func ClaimKey(ctx context.Context, db DB, key string, fingerprint []byte, abandonAfter time.Duration) (Claim, error) {
	token := uuid.New()
	const q = `
INSERT INTO idempotency_keys (key, fingerprint, state, claim)
VALUES ($1, $2, 'in_flight', $3)
ON CONFLICT (key) DO UPDATE SET fingerprint = EXCLUDED.fingerprint, state = 'in_flight', claim = EXCLUDED.claim,
    response_status = NULL, response_body = NULL, location = NULL, created_at = now(), updated_at = now()
  WHERE idempotency_keys.created_at < now() - $4::interval
     OR (idempotency_keys.state = 'in_flight' AND idempotency_keys.fingerprint = EXCLUDED.fingerprint
         AND idempotency_keys.updated_at < now() - $5::interval)
RETURNING claim`
	var got uuid.UUID
	err := db.QueryRow(ctx, q, key, fingerprint, token, KeyTTL, abandonAfter).Scan(&got)
	if err == nil {
		return Claim{Token: got}, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return Claim{}, fmt.Errorf("claim idempotency key: %w", err)
	}
	// Someone holds it, or held it: see what they left.
	var (
		fp       []byte
		state    string
		status   *int
		body     []byte
		location *string
	)
	const qs = `SELECT fingerprint, state, response_status, response_body, location FROM idempotency_keys WHERE key = $1`
	err = db.QueryRow(ctx, qs, key).Scan(&fp, &state, &status, &body, &location)
	if errors.Is(err, pgx.ErrNoRows) {
		// Released between the two statements: the caller may try again.
		return Claim{InFlight: true}, nil
	}
	if err != nil {
		return Claim{}, fmt.Errorf("read idempotency key: %w", err)
	}
	switch {
	case !bytes.Equal(fp, fingerprint):
		return Claim{Mismatch: true}, nil
	case state == "in_flight" || status == nil:
		return Claim{InFlight: true}, nil
	}
	r := &Response{Status: *status, Body: body}
	if location != nil {
		r.Location = *location
	}
	return Claim{Replay: r}, nil
}

// ErrClaimLost means another request took the key over; the work done
// under it must be rolled back.
var ErrClaimLost = errors.New("idempotency key was taken over by another request")

// QueueCompleteKey adds to b the statement that stores the response for
// key in the caller's transaction (the same one as the work it answers
// for). Its result must affect one row, or ErrClaimLost applies; check
// it with CheckCompleted.
func QueueCompleteKey(b *pgx.Batch, key string, token uuid.UUID, r Response) {
	const q = `
UPDATE idempotency_keys SET state = 'done', response_status = $3, response_body = $4, location = $5, updated_at = now()
WHERE key = $1 AND claim = $2 AND state = 'in_flight'`
	b.Queue(q, key, token, r.Status, r.Body, r.Location)
}

// ReleaseKey forgets a claim whose work failed or was refused, so the
// client may retry with the same key (Stripe saves no result for
// requests that did not execute).
func ReleaseKey(ctx context.Context, db DB, key string, token uuid.UUID) error {
	_, err := db.Exec(ctx, `DELETE FROM idempotency_keys WHERE key = $1 AND claim = $2 AND state = 'in_flight'`, key, token)
	if err != nil {
		return fmt.Errorf("release idempotency key: %w", err)
	}
	return nil
}

// PruneKeys deletes keys older than KeyTTL and returns how many.
func PruneKeys(ctx context.Context, db DB) (int64, error) {
	tag, err := db.Exec(ctx, `DELETE FROM idempotency_keys WHERE created_at < now() - $1::interval`, KeyTTL)
	if err != nil {
		return 0, fmt.Errorf("prune idempotency keys: %w", err)
	}
	return tag.RowsAffected(), nil
}
