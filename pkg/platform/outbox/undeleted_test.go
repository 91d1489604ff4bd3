package outbox_test

import (
	"context"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/shopflow/shopflow/pkg/platform/outbox"
	"github.com/shopflow/shopflow/pkg/platform/testenv"
)

// TestRowsItCannotDeleteArePublishedOnce: a database that refuses the
// relay's DELETE (read-only, a full disk) made every new session publish
// the same rows again, one copy a second (55 copies of one event in a
// trial), and a standby relay that took the lock over did the same.
// Published rows whose delete failed are deleted before anything is
// published again, by the relay that published them, holding its lock,
// so they leave once, and go once the database takes writes again.
//
// The relay notes a failed delete's rows just after reporting the
// failure; a session that ended on the report alone found none noted and
// gave its lock up (6 records, now and then, under -race). The pause
// between the two makes that order certain.
func TestRowsItCannotDeleteArePublishedOnce(t *testing.T) {
	t.Parallel()
	pool := newPool(t)
	ctx := context.Background()
	// The refusal: a read-only database's error, counting the attempts in
	// a sequence (nextval survives the rollback).
	for _, q := range []string{
		`CREATE SEQUENCE delete_attempts`,
		`CREATE FUNCTION refuse_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	PERFORM nextval('delete_attempts');
	RAISE EXCEPTION 'cannot execute DELETE in a read-only transaction' USING ERRCODE = 'read_only_sql_transaction';
END $$`,
		`CREATE TRIGGER refuse_delete BEFORE DELETE ON outbox FOR EACH STATEMENT EXECUTE FUNCTION refuse_delete()`,
	} {
		if _, err := pool.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	topic := testenv.Topic(t, "outbox", 1)
	writeTx(t, pool, topic, event("order-1", 0), event("order-1", 1), event("order-1", 2))
	// Two relays (two replicas): a standby that took the lock over would
	// publish them again. LockRetry 100ms.
	slowNote := func(r *outbox.Relay) {
		outbox.AfterDeleteFailed(r, func() { time.Sleep(300 * time.Millisecond) })
	}
	startRelayWith(t, pool, 200*time.Millisecond, slowNote)
	startRelayWith(t, pool, 200*time.Millisecond, slowNote)
	testenv.Consume(t, topic, 30*time.Second, testenv.Count(3))
	attempts := func() int64 {
		var n int64
		if err := pool.QueryRow(ctx, `SELECT last_value FROM delete_attempts`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	testenv.Eventually(t, 30*time.Second, "five refused deletes", func() bool { return attempts() >= 5 })
	if n := records(t, topic); n != 3 {
		t.Errorf("after %d refused deletes the topic holds %d records, want the 3 published once", attempts(), n)
	}

	if _, err := pool.Exec(ctx, `DROP TRIGGER refuse_delete ON outbox`); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, "the published rows deleted once the database takes writes", func() bool { return backlog(t, pool) == 0 })
	if n := records(t, topic); n != 3 {
		t.Errorf("after the deletes went through the topic holds %d records, want 3", n)
	}
}

// records is how many records partition 0 of topic holds.
func records(t *testing.T, topic string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := kafka.DialLeader(ctx, "tcp", testenv.Kafka(t)[0], topic, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	n, err := conn.ReadLastOffset()
	if err != nil {
		t.Fatal(err)
	}
	return n
}
