// Package outbox implements the transactional outbox: a service writes the
// events describing a state change into its schema's outbox table in the
// same transaction as the change (Write), and a Relay publishes them to
// Kafka afterwards. An event is therefore published if and only if its
// transaction committed, whatever crashes in between.
//
// Guarantees and their limits:
//   - Every committed event is published at least once; the relay deletes a
//     row only after the broker acknowledged it with acks=all. A relay that
//     dies after publishing but before deleting publishes those rows again
//     when it (or a standby) takes over: the only duplicates, which the
//     consumers' inbox absorbs (ce_id).
//   - Events for one key are published in the order of their ids. Writers
//     must serialize per key (lock the aggregate's row before Write, as the
//     services do with SELECT ... FOR UPDATE), so id order is commit order
//     for each key. Rows are read afresh each round, never by "id greater
//     than the last sent", so a row committed late is not skipped.
//   - One relay per schema publishes at a time: it holds a session-level
//     advisory lock on a dedicated connection; standbys poll for the lock
//     and take over within LockRetry when the holder's connection dies.
package outbox

import (
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/shopflow/shopflow/pkg/events"
	"github.com/shopflow/shopflow/pkg/platform/tracing"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations holds the outbox table's migrations (tern format); apply them
// to the service's schema with pg.Migrate under the name "outbox_version".
func Migrations() fs.FS {
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		panic(err) // embedded path is fixed at compile time
	}
	return sub
}

// MigrationsTable is the version table name for Migrations.
const MigrationsTable = "outbox_version"

// channelPrefix + current_schema() is the LISTEN/NOTIFY channel.
const channelPrefix = "shop_outbox_"

// Write encodes evs and inserts them into the outbox inside tx, in order.
// After tx commits, call the relay's Wake (the inbox and service.Deps.Wake
// do) so it publishes them at once rather than at its next poll.
func Write(ctx context.Context, tx pgx.Tx, evs ...events.Event) error {
	if len(evs) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	if err := Queue(ctx, b, evs...); err != nil {
		return err
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("outbox: insert %d events: %w", len(evs), err)
	}
	return nil
}

// Queue is Write for a caller that sends its statements as one pgx.Batch
// (one round trip): it adds the outbox insert to b, which must then be
// sent in the transaction that makes the change the events describe.
func Queue(ctx context.Context, b *pgx.Batch, evs ...events.Event) error {
	if len(evs) == 0 {
		return nil
	}
	msgs := make([]events.Message, len(evs))
	tp := tracing.TraceParent(ctx) // the request's or the consumed event's trace, when tracing is on
	for i, e := range evs {
		if e.TraceParent == "" {
			e.TraceParent = tp
		}
		m, err := events.Encode(e)
		if err != nil {
			return fmt.Errorf("outbox: %w", err)
		}
		msgs[i] = m
	}
	return QueueMessages(b, msgs...)
}

// WriteMessages inserts already encoded messages; see Write.
func WriteMessages(ctx context.Context, tx pgx.Tx, msgs ...events.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	if err := QueueMessages(b, msgs...); err != nil {
		return err
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("outbox: insert %d events: %w", len(msgs), err)
	}
	return nil
}

// QueueMessages is Queue for already encoded messages.
func QueueMessages(b *pgx.Batch, msgs ...events.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	topics := make([]string, len(msgs))
	keys := make([][]byte, len(msgs))
	values := make([][]byte, len(msgs))
	headers := make([]string, len(msgs))
	for i, m := range msgs {
		size := recordSize(m.Key, m.Value)
		for _, h := range m.Headers {
			size += headerSize(h.Key, h.Value)
		}
		if size > maxRoundBytes {
			// The relay could never publish it, and would retry it first
			// on every round: refuse it here, where the writer can tell.
			return fmt.Errorf("outbox: a %s event of %d bytes: at most %d can be published", m.Topic, size, maxRoundBytes)
		}
		pairs := make([][2]string, len(m.Headers))
		for j, h := range m.Headers {
			if !utf8.Valid(h.Value) {
				return fmt.Errorf("outbox: header %q is not UTF-8 text", h.Key)
			}
			pairs[j] = [2]string{h.Key, string(h.Value)}
		}
		hb, err := json.Marshal(pairs)
		if err != nil {
			return fmt.Errorf("outbox: headers: %w", err)
		}
		topics[i], keys[i], values[i], headers[i] = m.Topic, m.Key, m.Value, string(hb)
		if keys[i] == nil {
			keys[i] = []byte{}
		}
	}
	// No NOTIFY here: it would serialize every writer's commit (see
	// Relay). The writer calls Relay.Wake after its commit instead.
	const q = `
INSERT INTO outbox (topic, key, value, headers)
SELECT t, k, v, h::jsonb
FROM unnest($1::text[], $2::bytea[], $3::bytea[], $4::text[]) WITH ORDINALITY AS u(t, k, v, h, n)
ORDER BY n`
	b.Queue(q, topics, keys, values, headers)
	return nil
}

// Drained reports whether every event written to db's outbox more than
// age ago (by the database's clock, which stamped them) has been
// published, and when the database looked (its clock, at the statement's
// start): what a caller needs before it acts on an answer not having
// come, since no answer can come to an event still waiting here. It reads
// the oldest row by id, one index probe however long the backlog (a row
// committed after a younger one can be a little older: an answer awaited
// that much longer).
func Drained(ctx context.Context, db interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}, age time.Duration) (drained bool, at time.Time, err error) {
	err = db.QueryRow(ctx, `SELECT coalesce((SELECT created_at FROM outbox ORDER BY id LIMIT 1) > now() - $1 * interval '1 microsecond', true), now()`,
		age.Microseconds()).Scan(&drained, &at)
	if err != nil {
		return false, time.Time{}, fmt.Errorf("outbox: drained of events older than %s: %w", age, err)
	}
	return drained, at.UTC(), nil
}
