package testenv

import (
	"context"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"

	"github.com/shopflow/shopflow/pkg/platform/config"
	"github.com/shopflow/shopflow/pkg/platform/kafkatopics"
	"github.com/shopflow/shopflow/pkg/platform/pg"
)

// Pool opens a pool on a fresh database for this test, with search_path
// set to schema and the given migrations applied. It is closed when the
// test ends.
func Pool(t testing.TB, schema string, sets ...pg.Migrations) *pgxpool.Pool {
	t.Helper()
	return PoolAt(t, DatabaseURL(t), schema, sets...)
}

// PoolAt is Pool on an existing database URL (several schemas in one
// database, as in the full suite).
func PoolAt(t testing.TB, url, schema string, sets ...pg.Migrations) *pgxpool.Pool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool, err := pg.Connect(ctx, pg.Config{URL: url, Schema: schema, StartupTimeout: 10 * time.Second}, nil)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(pool.Close)
	if err := pg.Migrate(ctx, pool, nil, schema, sets...); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return pool
}

// Consume reads records of topic through a fresh consumer group until
// done returns true for the records read so far or the timeout passes
// (then the test fails, showing how many arrived). It commits nothing.
func Consume(t testing.TB, topic string, timeout time.Duration, done func([]kafka.Message) bool) []kafka.Message {
	t.Helper()
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers: Kafka(t), GroupID: Name(t, "reader"), Topic: topic,
		StartOffset: kafka.FirstOffset, MaxWait: 100 * time.Millisecond,
		SessionTimeout: 6 * time.Second, HeartbeatInterval: time.Second,
		JoinGroupBackoff: 200 * time.Millisecond, RebalanceTimeout: 5 * time.Second,
	})
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var got []kafka.Message
	for !done(got) {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			t.Fatalf("testenv: consuming %s: %d records after %v: %v", topic, len(got), timeout, err)
		}
		got = append(got, m)
	}
	return got
}

// Count returns a done function for Consume that waits for n records.
func Count(n int) func([]kafka.Message) bool {
	return func(ms []kafka.Message) bool { return len(ms) >= n }
}

// Eventually polls cond every 20 ms until it holds or timeout passes; then
// the test fails with msg.
func Eventually(t testing.TB, timeout time.Duration, msg string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", timeout, msg)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Prefix returns a unique topic prefix (config.Common.KafkaTopicPrefix)
// for a test that runs whole services, so their fixed topic and group
// names (shop.orders, group payment) do not meet other tests'. Topics
// under the prefix are deleted when the test ends.
func Prefix(t testing.TB) string {
	t.Helper()
	brokers := Kafka(t)
	prefix := "t" + randHex(5) + "."
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c := &kafka.Client{Addr: kafka.TCP(brokers...)}
		md, err := c.Metadata(ctx, &kafka.MetadataRequest{})
		if err != nil {
			t.Logf("testenv: list topics to delete under %s: %v", prefix, err)
			return
		}
		var names []string
		for _, tp := range md.Topics {
			if strings.HasPrefix(tp.Name, prefix) {
				names = append(names, tp.Name)
			}
		}
		if len(names) > 0 {
			_ = kafkatopics.Delete(ctx, brokers, names...)
		}
	})
	return prefix
}

// Common is a service configuration for this test: a fresh database, the
// test brokers, a unique topic prefix, HTTP on a free loopback port.
func Common(t testing.TB) config.Common {
	t.Helper()
	return config.Common{
		DatabaseURL:      DatabaseURL(t),
		KafkaBrokers:     Kafka(t),
		HTTPAddr:         "127.0.0.1:0",
		LogLevel:         "info",
		ShutdownTimeout:  20 * time.Second,
		KafkaTopicPrefix: Prefix(t),
	}
}

// Rows returns the single text column of q's rows, failing t on error:
// tests render what a run left in the database as lines to compare.
func Rows(t testing.TB, pool *pgxpool.Pool, q string, args ...any) []string {
	t.Helper()
	rows, err := pool.Query(context.Background(), q, args...)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// FreeAddr returns a loopback host:port that nothing listens on right
// now: an address for a program the test starts (and restarts) there, or
// one that stands for a service that is down.
//
// The port is below the kernel's ephemeral range (ip_local_port_range),
// never one the kernel hands out itself: a port from "127.0.0.1:0" went
// back to that pool when the probe closed, and the many connections of
// the tests running alongside (their source ports) or a server of theirs
// on ":0" could take it before the program bound it, or while it
// restarted there (the crash test's shipping once failed with "bind:
// address already in use"). Ports handed out once are not handed out
// again by this process.
func FreeAddr(t testing.TB) string {
	t.Helper()
	lo, hi := 20000, ephemeralStart()
	freeAddrs.mu.Lock()
	defer freeAddrs.mu.Unlock()
	for range 1000 {
		port := lo + rand.IntN(hi-lo)
		if freeAddrs.given[port] {
			continue
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			continue // in use
		}
		l.Close()
		freeAddrs.given[port] = true
		return addr
	}
	t.Fatalf("testenv: no free port in %d..%d after 1000 tries", lo, hi-1)
	return ""
}

var freeAddrs = struct {
	mu    sync.Mutex
	given map[int]bool
}{given: map[int]bool{}}

// ephemeralStart is the first port of the kernel's ephemeral range
// (Linux: /proc/sys/net/ipv4/ip_local_port_range; 32768 elsewhere and by
// default), kept above 20000 + 1000.
func ephemeralStart() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > 21000 {
				return n
			}
		}
	}
	return 32768
}
