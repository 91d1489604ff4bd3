package service_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/segmentio/kafka-go"

	"github.com/shopflow/shopflow/pkg/events"
	"github.com/shopflow/shopflow/pkg/platform/broker"
	"github.com/shopflow/shopflow/pkg/platform/outbox"
	"github.com/shopflow/shopflow/pkg/platform/service"
	"github.com/shopflow/shopflow/pkg/platform/testenv"
)

// records returns how many records topic holds on the broker at addr
// (the sum of its partitions' last offsets: a fresh broker starts at 0),
// or -1 while the broker does not know it.
func records(t *testing.T, addr, topic string) int64 {
	t.Helper()
	conn, err := kafka.Dial("tcp", addr)
	if err != nil {
		return -1
	}
	defer conn.Close()
	ps, err := conn.ReadPartitions(topic)
	if err != nil || len(ps) == 0 {
		return -1
	}
	var n int64
	for _, p := range ps {
		pc, err := kafka.DialLeader(context.Background(), "tcp", addr, topic, p.ID)
		if err != nil {
			return -1
		}
		last, err := pc.ReadLastOffset()
		pc.Close()
		if err != nil {
			return -1
		}
		n += last
	}
	return n
}

func readyz(base string) (int, string) {
	res, err := http.Get(base + "/readyz")
	if err != nil {
		return 0, err.Error()
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// TestABrokerThatLostItsDataGetsTheTopicsBack: the broker restarts on
// the same address with nothing (kill, rm -rf of its data directory,
// start) under a running service. The service says "kafka" is not ready,
// naming the missing topics, creates them again, publishes what comes
// next, and the period logs a bounded number of lines (the group
// reader's reports of the missing topic: hundreds a second before).
// Not parallel: it sets the topic watch's interval (to an hour, so that
// /readyz is what finds the topics missing, deterministically).
func TestABrokerThatLostItsDataGetsTheTopicsBack(t *testing.T) {
	service.SetTopicWatchInterval(t, time.Hour)
	b1, err := broker.Start(broker.Config{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	addr := b1.Addr()
	var b2 *broker.Broker
	t.Cleanup(func() {
		b1.Close() // a second Close is harmless
		if b2 != nil {
			b2.Close()
		}
	})
	common := testenv.Common(t)
	common.KafkaBrokers = []string{addr}
	prefix := common.KafkaTopicPrefix
	spec, setup := echoSpec()
	logs := &testenv.SyncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	httpAddr, _ := testenv.Serve(t, func(ctx context.Context, started func(string)) error {
		return service.Run(service.OnStarted(ctx, started), spec, common, log, setup)
	})
	base := "http://" + httpAddr
	pool := testenv.PoolAt(t, common.DatabaseURL, spec.Schema)
	seen := func() int {
		var n int
		if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM seen`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	// An order through the outbox: the relay publishes it to shop.orders,
	// the consumer applies it and answers on shop.payments.
	order := func() {
		t.Helper()
		ev := events.New("/shopflow/order", events.OrderPlaced{
			OrderID: uuid.NewString(), CustomerID: "c1", Currency: "USD", TotalCents: 500,
			Items:           []events.Line{{SKU: "SKU-1", Quantity: 1, UnitPriceCents: 500}},
			Payment:         events.PaymentMethod{CardToken: "tok_visa"},
			ShippingAddress: events.Address{Name: "A", Line1: "1 Main St", City: "X", PostalCode: "1", Country: "US"},
			PlacedAt:        time.Now().UTC(),
		})
		if err := pgx.BeginFunc(context.Background(), pool, func(tx pgx.Tx) error {
			return outbox.Write(context.Background(), tx, ev)
		}); err != nil {
			t.Fatal(err)
		}
	}
	order()
	testenv.Eventually(t, time.Minute, "the first order was not applied", func() bool { return seen() == 1 })

	b1.Close()
	b2, err = broker.Start(broker.Config{Addr: addr}) // same address, no data
	if err != nil {
		t.Fatal(err)
	}
	before := strings.Count(logs.String(), "\n")
	restarted := time.Now()
	t.Cleanup(func() {
		if t.Failed() {
			lines := strings.Split(logs.String(), "\n")[before:]
			t.Logf("log since the broker's loss (the first 30 of %d lines):\n%s", len(lines), strings.Join(lines[:min(30, len(lines))], "\n"))
		}
	})

	// (a) Not ready, naming the topics.
	topics := []string{prefix + events.TopicOrders, prefix + events.TopicPayments, prefix + events.DLQTopic(spec.Name)}
	var body string
	testenv.Eventually(t, 30*time.Second, "/readyz never said kafka was not ready", func() bool {
		var status int
		status, body = readyz(base)
		if status == http.StatusServiceUnavailable && strings.Contains(body, "topics missing") {
			return true
		}
		time.Sleep(100 * time.Millisecond)
		return false
	})
	for _, tp := range topics {
		if !strings.Contains(body, tp) {
			t.Errorf("/readyz does not name %s: %s", tp, body)
		}
	}

	// (b) The topics come back, as they were made, and the service is
	// ready again.
	testenv.Eventually(t, 30*time.Second, "/readyz never ready again", func() bool {
		status, _ := readyz(base)
		if status == http.StatusOK {
			return true
		}
		time.Sleep(100 * time.Millisecond)
		return false
	})
	recovered := time.Since(restarted)
	conn, err := kafka.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	for tp, want := range map[string]int{topics[0]: 3, topics[1]: 3, topics[2]: 1} {
		ps, err := conn.ReadPartitions(tp)
		if err != nil || len(ps) != want {
			t.Errorf("%s: %d partitions (%v), want %d", tp, len(ps), err, want)
		}
	}
	conn.Close()

	// (c) An event written to the outbox now is published to the topic
	// created again, and the consumer applies it: its group joins the
	// topics afresh once they are back (kafka-go's member could be left
	// with no partition when a topic appeared between its leader's
	// assignment and its partition watcher's start).
	order()
	testenv.Eventually(t, 30*time.Second, "the order written after the loss was not published", func() bool {
		return records(t, addr, topics[0]) == 1
	})
	testenv.Eventually(t, 30*time.Second, "the order written after the loss was not applied", func() bool { return seen() == 2 })

	// (d) The lines logged meanwhile, but for the test's own probes'
	// "not ready", are few; each topic's warning is among them once.
	lines := strings.Split(logs.String(), "\n")[before:]
	var counted []string
	for _, l := range lines {
		if l != "" && !strings.Contains(l, `"msg":"not ready"`) {
			counted = append(counted, l)
		}
	}
	for _, tp := range topics {
		want := fmt.Sprintf("topic %s was missing on the broker (its data lost?); created it again", tp)
		if n := strings.Count(strings.Join(counted, "\n"), want); n != 1 {
			t.Errorf("%d warnings %q, want 1", n, want)
		}
	}
	const maxLines = 40
	if len(counted) > maxLines {
		t.Errorf("%d lines logged in the %s from the broker's loss to the order published (ready again after %s), want at most %d; the first 20:\n%s",
			len(counted), time.Since(restarted).Round(time.Second), recovered.Round(time.Second), maxLines, strings.Join(counted[:20], "\n"))
	}
	t.Logf("%d lines logged; ready again %s after the broker's loss", len(counted), recovered.Round(100*time.Millisecond))
}
