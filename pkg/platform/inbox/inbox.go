// Package inbox implements the idempotent consumer: a kafka-go consumer
// group reader that applies each record exactly once to the service's
// schema, however often Kafka delivers it.
//
// For each record: decode it (pkg/events), then in one transaction insert
// (group, ce_id) into the inbox table (ON CONFLICT DO NOTHING: already
// applied, skip), run the handler, which writes its state and its result
// events through the outbox in the same transaction, and commit; only then
// commit the Kafka offset. A crash anywhere before the database commit
// leaves nothing behind; a crash between the database commit and the offset
// commit redelivers the record, and the inbox row absorbs it.
//
// Failures never lose records and never stop a partition for good:
//   - Transient failures (lost connection, deadlock, serialization, or any
//     handler error not marked permanent) are retried in place with capped
//     exponential backoff; the partition waits, so no later record of it is
//     committed past an unapplied one (kafka-go #764).
//   - Database unavailability is retried indefinitely. Handler errors are
//     retried MaxAttempts times; then, or at once for errors wrapped with
//     Permanent and for records that cannot be decoded, the record goes to
//     the dead-letter topic (shop.dlq.<group>) with headers naming the
//     error, source topic, partition and offset, and the partition moves on.
//   - A consumer whose database stays unavailable for Config.LeaveAfter
//     (20 s) leaves its group, its records in hand uncommitted, so that
//     the other members take its partitions, and joins again once the
//     database answers and takes writes.
//
// For throughput, records already fetched are applied in batches of up to
// BatchSize in one transaction. If any handler in a batch fails, the batch
// is rolled back and its records are applied one transaction each, so the
// per-record guarantees above hold. Handlers may therefore run more than
// once for one record (rollback, retry, redelivery); anything they do
// outside the transaction must be idempotent.
//
// The inbox keeps a row per applied event. With Config.Retention set, a
// pruner deletes the rows older than that (INBOX_RETENTION in the
// services, 21 days by default), so the table stays the size of the
// retention window instead of growing with every event ever applied.
package inbox

import (
	"context"
	"embed"
	"errors"
	"io/fs"

	"github.com/jackc/pgx/v5"

	"github.com/shopflow/shopflow/pkg/events"
	"github.com/shopflow/shopflow/pkg/platform/kafkatopics"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations holds the inbox table's migrations (tern format); apply them
// with pg.Migrate under MigrationsTable.
func Migrations() fs.FS {
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		panic(err) // embedded path is fixed at compile time
	}
	return sub
}

// MigrationsTable is the version table name for Migrations.
const MigrationsTable = "inbox_version"

// Handler applies one event inside tx. Returning an error rolls back
// everything the record did, including its inbox row.
type Handler func(ctx context.Context, tx pgx.Tx, ev events.Event) error

// Item is one event handed to a BatchHandler, with the context to write
// its consequences under: it carries the event's trace, so an outbox
// write made with it continues that trace.
type Item struct {
	Ctx   context.Context
	Event events.Event
}

// BatchHandler applies several events, in delivery order, inside tx: a
// handler that does the same work for many events can do it in a few
// statements (lock all the rows, apply in memory, write them back) rather
// than a few per event. Returning an error rolls back the whole batch;
// the inbox then splits it and applies the halves, down to one event in
// its own transaction with the retry and dead-letter rules, so a bad
// event costs its neighbours a few extra transactions, never their
// guarantees. A handler that knows which event failed returns
// ItemFailed instead: the events before it are applied again as one
// batch, the failing one alone (retries, dead letter), and the rest as a
// batch, with no halving. Events of one key arrive in order; the same
// event never appears twice in one call.
type BatchHandler func(ctx context.Context, tx pgx.Tx, items []Item) error

// ItemFailed is a BatchHandler's error saying items[index] failed with
// err and the items before it did not (they are applied without it).
// Classify err as the Handler would (Permanent or not): it is what the
// failing event's retries and dead letter see. A nil err still fails the
// item (the batch is rolled back either way; taken as success, its
// offsets would be committed with nothing applied).
func ItemFailed(index int, err error) error {
	if err == nil {
		err = errNoCause
	}
	return &recordError{index: index, err: err}
}

var errNoCause = errors.New("inbox: the batch handler named a failing item without an error")

// FailedItem returns the index an ItemFailed error (or one wrapping it)
// names.
func FailedItem(err error) (index int, ok bool) {
	var re *recordError
	if errors.As(err, &re) {
		return re.index, true
	}
	return 0, false
}

// PermanentError marks a handler error that retrying cannot fix (invalid
// data, a business rule broken): the record goes to the dead-letter topic
// at once.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return "permanent: " + e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent wraps err as a PermanentError (nil stays nil).
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Err: err}
}

// IsPermanent reports whether err is, or wraps, a PermanentError.
func IsPermanent(err error) bool {
	var p *PermanentError
	return errors.As(err, &p)
}

// OutageError marks a handler error as a system outside the database
// (a payment gateway, a carrier) not answering now: nothing is wrong
// with the record, and the same call later can succeed. The inbox
// retries it with the backoff, as it does the database's outages, and
// without counting it against MaxAttempts, until Config.OutageFor has
// passed since the record's first such failure; then it dead-letters
// it. Five quick attempts (about 1.5 s) dead-lettered a capture, void
// or refund through any gateway hiccup longer than that, leaving a
// confirmed order unpaid or a cancelled one's money held until someone
// replayed it.
type OutageError struct{ Err error }

func (e *OutageError) Error() string { return e.Err.Error() }
func (e *OutageError) Unwrap() error { return e.Err }

// Outage wraps err as an OutageError (nil stays nil).
func Outage(err error) error {
	if err == nil {
		return nil
	}
	return &OutageError{Err: err}
}

// IsOutage reports whether err is, or wraps, an OutageError.
func IsOutage(err error) bool {
	var o *OutageError
	return errors.As(err, &o)
}

// DLQTopicConfigs are the settings a dead-letter topic is created with:
// kept until replayed or purged by an operator (retention.ms=-1), since a
// dead letter that expires with the broker's default retention (7 days on
// Apache Kafka) is a record dropped without anyone deciding so. A topic
// that exists already keeps its settings (kafka-configs.sh changes them).
var DLQTopicConfigs = map[string]string{"retention.ms": "-1"}

// DLQTopicSpec is how the dead-letter topic named topic is created: one
// partition, DLQTopicConfigs. The consumer creates it at start, and
// service.Run's topic watch again if the broker loses it.
func DLQTopicSpec(topic string) kafkatopics.Spec {
	return kafkatopics.Spec{Name: topic, Partitions: 1, Configs: DLQTopicConfigs}
}

// DLQ header names on dead-lettered records (besides the original
// headers). The contract, and so the names, live in pkg/events.
const (
	HeaderError     = events.HeaderDLQError
	HeaderTopic     = events.HeaderDLQSourceTopic
	HeaderPartition = events.HeaderDLQSourcePartition
	HeaderOffset    = events.HeaderDLQSourceOffset
	HeaderGroup     = events.HeaderDLQGroup
	HeaderAttempts  = events.HeaderDLQAttempts
	HeaderFailedAt  = events.HeaderDLQFailedAt
	HeaderOmitted   = events.HeaderDLQOmitted
)
