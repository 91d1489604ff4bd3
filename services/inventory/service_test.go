package inventory_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"

	"github.com/shopflow/shopflow/pkg/events"
	"github.com/shopflow/shopflow/pkg/platform/service"
	"github.com/shopflow/shopflow/pkg/platform/testenv"
	"github.com/shopflow/shopflow/services/inventory"
)

const adminToken = "test-admin-token"

// suite is one inventory service running in-process on the real broker
// and PostgreSQL, with a producer for shop.orders, a collector of
// everything published on shop.inventory and a pool on its schema.
type suite struct {
	t      *testing.T
	base   string
	prefix string
	db     *pgxpool.Pool
	w      *kafka.Writer
	logs   *testenv.SyncBuffer

	mu      sync.Mutex
	results []events.Event
	read    map[int]int64 // partition → highest offset collected
	brokers []string
}

func start(t *testing.T) *suite {
	t.Helper()
	common := testenv.Common(t)
	cfg := inventory.Config{Common: common, AdminToken: adminToken, LockTimeout: 200 * time.Millisecond}
	logs := &testenv.SyncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("service log:\n%s", logs)
		}
	})
	addr, _ := testenv.Serve(t, func(ctx context.Context, started func(string)) error {
		return inventory.Run(service.OnStarted(ctx, started), cfg, log)
	})
	s := &suite{t: t, base: "http://" + addr, prefix: common.KafkaTopicPrefix, logs: logs, read: map[int]int64{}, brokers: common.KafkaBrokers}
	s.db = testenv.PoolAt(t, common.DatabaseURL, inventory.Schema)
	s.w = &kafka.Writer{Transport: &kafka.Transport{}, Addr: kafka.TCP(common.KafkaBrokers...), Topic: s.prefix + events.TopicOrders,
		Balancer: &kafka.Murmur2Balancer{}, RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond}
	t.Cleanup(func() { s.w.Close() })
	s.collect()
	return s
}

// collect reads shop.inventory from the start for the whole test.
func (s *suite) collect() {
	ctx, cancel := context.WithCancel(context.Background())
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: s.brokers, GroupID: s.prefix + "collector",
		Topic: s.prefix + events.TopicInventory, StartOffset: kafka.FirstOffset, MaxWait: 100 * time.Millisecond,
		SessionTimeout: 6 * time.Second, HeartbeatInterval: time.Second, JoinGroupBackoff: 200 * time.Millisecond})
	t := s.t // subtests swap s.t; the collector reports to the test itself
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			m, err := r.FetchMessage(ctx)
			if err != nil {
				return
			}
			ev, err := events.Decode(fromKafka(m.Headers), m.Value)
			s.mu.Lock()
			if err != nil {
				t.Errorf("published record does not decode: %v", err)
			} else {
				s.results = append(s.results, ev)
			}
			s.read[m.Partition] = max(s.read[m.Partition], m.Offset)
			s.mu.Unlock()
		}
	}()
	t.Cleanup(func() { cancel(); <-done; r.Close() })
}

func fromKafka(hs []kafka.Header) []events.Header {
	out := make([]events.Header, len(hs))
	for i, h := range hs {
		out[i] = events.Header(h)
	}
	return out
}

// produce writes events (or already encoded messages) to shop.orders.
func (s *suite) produce(msgs ...events.Message) {
	s.t.Helper()
	kms := make([]kafka.Message, len(msgs))
	for i, m := range msgs {
		kms[i] = kafka.Message{Key: m.Key, Value: m.Value}
		for _, h := range m.Headers {
			kms[i].Headers = append(kms[i].Headers, kafka.Header(h))
		}
	}
	if err := s.w.WriteMessages(context.Background(), kms...); err != nil {
		s.t.Fatal(err)
	}
}

func encode(t *testing.T, p events.Payload) events.Message {
	t.Helper()
	m, err := events.Encode(events.New("/shopflow/order", p))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func eventID(m events.Message) string {
	for _, h := range m.Headers {
		if h.Key == events.HeaderID {
			return string(h.Value)
		}
	}
	return ""
}

// settle waits until the service has consumed everything on shop.orders
// so far (its group's committed offsets reach the end of every partition:
// offsets are committed only after the database commit), applied the
// given records (their inbox rows exist), published everything its
// transactions wrote (the outbox is empty), and the collector has read to
// the end of shop.inventory. After it, the results seen are all there will
// be for what was produced.
func (s *suite) settle(msgs ...events.Message) {
	s.t.Helper()
	ctx := context.Background()
	orders := s.prefix + events.TopicOrders
	ends := s.ends(orders)
	client := &kafka.Client{Addr: kafka.TCP(s.brokers...), Transport: &kafka.Transport{}}
	parts := make([]int, 0, len(ends))
	for p := range ends {
		parts = append(parts, p)
	}
	var lag string
	defer func() {
		if s.t.Failed() {
			s.t.Logf("last consumer lag: %s", lag)
		}
	}()
	testenv.Eventually(s.t, time.Minute, "shop.orders consumed to the end", func() bool {
		res, err := client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: s.prefix + inventory.Name,
			Topics: map[string][]int{orders: parts}})
		if err != nil || res.Error != nil {
			lag = fmt.Sprint(err, res)
			return false
		}
		for _, p := range res.Topics[orders] {
			// A partition nothing was written to has no committed offset.
			if end := ends[p.Partition]; end > 0 && (p.Error != nil || p.CommittedOffset < end) {
				lag = fmt.Sprintf("partition %d committed %d, end %d, err %v", p.Partition, p.CommittedOffset, end, p.Error)
				return false
			}
		}
		lag = "none: shop.orders consumed to the end"
		return true
	})
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = eventID(m)
	}
	testenv.Eventually(s.t, time.Minute, fmt.Sprintf("events %v applied and published", ids), func() bool {
		var applied, pending int
		err := s.db.QueryRow(ctx, `SELECT (SELECT count(*) FROM inbox WHERE event_id = ANY($1)), (SELECT count(*) FROM outbox)`, ids).
			Scan(&applied, &pending)
		return err == nil && applied == len(ids) && pending == 0
	})
	results := s.ends(s.prefix + events.TopicInventory)
	testenv.Eventually(s.t, time.Minute, "collector caught up with shop.inventory", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		for p, end := range results {
			if got, ok := s.read[p]; end > 0 && (!ok || got < end-1) {
				return false
			}
		}
		return true
	})
}

// ends returns the end offset (the next offset to be written) of each of
// topic's 12 partitions.
func (s *suite) ends(topic string) map[int]int64 {
	s.t.Helper()
	req := &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{}}
	for p := range 12 {
		req.Topics[topic] = append(req.Topics[topic], kafka.LastOffsetOf(p))
	}
	res, err := (&kafka.Client{Addr: kafka.TCP(s.brokers...), Transport: &kafka.Transport{}}).ListOffsets(context.Background(), req)
	if err != nil {
		s.t.Fatal(err)
	}
	out := map[int]int64{}
	for _, po := range res.Topics[topic] {
		if po.Error != nil {
			s.t.Fatalf("list offsets %s: %v", topic, po.Error)
		}
		out[po.Partition] = po.LastOffset
	}
	if len(out) != 12 {
		s.t.Fatalf("list offsets %s: %d partitions, want 12", topic, len(out))
	}
	return out
}

// resultsFor returns what was published about the order so far.
func (s *suite) resultsFor(orderID string) []events.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []events.Event
	for _, ev := range s.results {
		if ev.Subject == orderID {
			out = append(out, ev)
		}
	}
	return out
}

func (s *suite) do(method, path, auth string, body any) (int, map[string]any) {
	s.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, s.base+path, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if auth != "" {
		req.Header.Set("Authorization", "Bearer "+auth)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer res.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
		s.t.Fatalf("%s %s: body is not JSON: %v", method, path, err)
	}
	return res.StatusCode, out
}

func (s *suite) setStock(sku string, n int) {
	s.t.Helper()
	if code, body := s.do("PUT", "/v1/stock/"+sku, adminToken, map[string]int{"on_hand": n}); code != http.StatusOK && code != http.StatusCreated {
		s.t.Fatalf("PUT %s = %d %v", sku, code, body)
	}
}

// level is GET /v1/stock/{sku}: on hand, reserved, available.
func (s *suite) level(sku string) [3]int {
	s.t.Helper()
	code, body := s.do("GET", "/v1/stock/"+sku, "", nil)
	if code != http.StatusOK {
		s.t.Fatalf("GET %s = %d %v", sku, code, body)
	}
	n := func(k string) int { f, _ := body[k].(float64); return int(f) }
	return [3]int{n("on_hand"), n("reserved"), n("available")}
}

func (s *suite) wantLevel(sku string, onHand, reserved int) {
	s.t.Helper()
	if got, want := s.level(sku), [3]int{onHand, reserved, onHand - reserved}; got != want {
		s.t.Fatalf("%s: on_hand, reserved, available = %v, want %v", sku, got, want)
	}
}

func (s *suite) reservationStatus(orderID string) string {
	s.t.Helper()
	var status string
	err := s.db.QueryRow(context.Background(), `SELECT status FROM reservations WHERE order_id = $1`, orderID).Scan(&status)
	if err == pgx.ErrNoRows {
		return ""
	}
	if err != nil {
		s.t.Fatal(err)
	}
	return status
}

func placed(orderID string, lines ...events.Line) events.OrderPlaced {
	var total int64
	for _, l := range lines {
		total += int64(l.Quantity) * l.UnitPriceCents
	}
	return events.OrderPlaced{OrderID: orderID, CustomerID: "cust-42", Currency: "USD", TotalCents: total, Items: lines,
		Payment:         events.PaymentMethod{CardToken: "tok_visa"},
		ShippingAddress: events.Address{Name: "Ada Lovelace", Line1: "1 Main St", City: "Springfield", PostalCode: "12345", Country: "US"},
		PlacedAt:        time.Now().UTC()}
}

func line(sku string, q int) events.Line {
	return events.Line{SKU: sku, Quantity: q, UnitPriceCents: 1999}
}

func cancelled(orderID string) events.OrderCancelled {
	return events.OrderCancelled{OrderID: orderID, Reason: "payment declined", CancelledAt: time.Now().UTC()}
}

func confirmed(orderID string) events.OrderConfirmed {
	return events.OrderConfirmed{OrderID: orderID, ConfirmedAt: time.Now().UTC()}
}

func types(evs []events.Event) string {
	var ts []string
	for _, e := range evs {
		ts = append(ts, string(e.Type))
	}
	return strings.Join(ts, ",")
}

// TestService runs the whole service on the real broker and PostgreSQL
// and walks the saga's cases through shop.orders, checking what it
// publishes on shop.inventory, what the stock API shows and what it
// dead-letters.
func TestService(t *testing.T) {
	t.Parallel()
	s := start(t)
	s.setStock("SKU-0001", 10)
	s.setStock("SKU-0002", 5)
	s.setStock("SKU-0003", 2)

	t.Run("reserve then confirm", func(t *testing.T) {
		s.t = t
		id := uuid.NewString()
		m := encode(t, placed(id, line("SKU-0001", 2), line("SKU-0002", 1), line("SKU-0001", 1)))
		s.produce(m)
		s.settle(m)
		got := s.resultsFor(id)
		if len(got) != 1 || got[0].Type != events.TypeStockReserved {
			t.Fatalf("results %s, want one StockReserved", types(got))
		}
		r := got[0].Payload.(events.StockReserved)
		want := []events.StockLine{{SKU: "SKU-0001", Quantity: 3}, {SKU: "SKU-0002", Quantity: 1}}
		if fmt.Sprint(r.Items) != fmt.Sprint(want) || r.ReservationID == "" || got[0].Source != inventory.Source {
			t.Fatalf("StockReserved %+v from %s, want items %v from %s", r, got[0].Source, want, inventory.Source)
		}
		s.wantLevel("SKU-0001", 10, 3)
		s.wantLevel("SKU-0002", 5, 1)

		c := encode(t, confirmed(id))
		s.produce(c)
		s.settle(c)
		if got := s.resultsFor(id); len(got) != 1 {
			t.Fatalf("confirm published %s, want nothing more", types(got))
		}
		s.wantLevel("SKU-0001", 7, 0)
		s.wantLevel("SKU-0002", 4, 0)
		if st := s.reservationStatus(id); st != "committed" {
			t.Fatalf("status %q, want committed", st)
		}
	})

	t.Run("reject names the short SKUs and holds nothing", func(t *testing.T) {
		s.t = t
		id := uuid.NewString()
		m := encode(t, placed(id, line("SKU-0001", 1), line("SKU-0003", 3), line("SKU-9999", 1)))
		s.produce(m)
		s.settle(m)
		got := s.resultsFor(id)
		if len(got) != 1 || got[0].Type != events.TypeStockRejected {
			t.Fatalf("results %s, want one StockRejected", types(got))
		}
		short := got[0].Payload.(events.StockRejected).Short
		want := []events.ShortLine{{SKU: "SKU-0003", Requested: 3, Available: 2}, {SKU: "SKU-9999", Requested: 1, Available: 0}}
		if fmt.Sprint(short) != fmt.Sprint(want) {
			t.Fatalf("short %v, want %v", short, want)
		}
		s.wantLevel("SKU-0001", 7, 0)
		s.wantLevel("SKU-0003", 2, 0)

		// A compensation for something never done: recorded, nothing emitted.
		c := encode(t, cancelled(id))
		s.produce(c)
		s.settle(c)
		if got := s.resultsFor(id); len(got) != 1 {
			t.Fatalf("cancel of a rejected order published %s", types(got))
		}
		var reason string
		if err := s.db.QueryRow(context.Background(), `SELECT status || ':' || cancel_reason FROM reservations WHERE order_id = $1`, id).Scan(&reason); err != nil {
			t.Fatal(err)
		}
		if reason != "rejected:payment declined" {
			t.Fatalf("recorded %q, want rejected:payment declined", reason)
		}
		// A redelivered OrderPlaced (new event id) stays rejected, even now stock is there.
		s.setStock("SKU-0003", 50)
		again := encode(t, placed(id, line("SKU-0001", 1), line("SKU-0003", 3), line("SKU-9999", 1)))
		s.produce(again)
		s.settle(again)
		if got := s.resultsFor(id); len(got) != 1 || s.reservationStatus(id) != "rejected" {
			t.Fatalf("redelivered placed: published %s, status %s", types(got), s.reservationStatus(id))
		}
		s.wantLevel("SKU-0003", 50, 0)
	})

	t.Run("cancel releases once", func(t *testing.T) {
		s.t = t
		id := uuid.NewString()
		m := encode(t, placed(id, line("SKU-0002", 4)))
		s.produce(m)
		s.settle(m)
		s.wantLevel("SKU-0002", 4, 4)
		c1, c2 := encode(t, cancelled(id)), encode(t, cancelled(id)) // two cancels, distinct ids
		s.produce(c1, c2)
		s.settle(c1, c2)
		got := s.resultsFor(id)
		if types(got) != "shop.stock.reserved.v1,shop.stock.released.v1" {
			t.Fatalf("results %s, want reserved then one released", types(got))
		}
		rel := got[1].Payload.(events.StockReleased)
		if rel.ReservationID != got[0].Payload.(events.StockReserved).ReservationID ||
			fmt.Sprint(rel.Items) != fmt.Sprint([]events.StockLine{{SKU: "SKU-0002", Quantity: 4}}) {
			t.Fatalf("StockReleased %+v does not give back reservation %+v", rel, got[0].Payload)
		}
		s.wantLevel("SKU-0002", 4, 0)
		if st := s.reservationStatus(id); st != "released" {
			t.Fatalf("status %q, want released", st)
		}
	})

	t.Run("duplicate record has one effect", func(t *testing.T) {
		s.t = t
		id := uuid.NewString()
		m := encode(t, placed(id, line("SKU-0001", 2)))
		s.produce(m, m) // the same ce_id twice, as a relay retry would
		s.produce(m)
		s.settle(m)
		if got := s.resultsFor(id); len(got) != 1 {
			t.Fatalf("results %s, want one StockReserved", types(got))
		}
		s.wantLevel("SKU-0001", 7, 2)
		var rows int
		if err := s.db.QueryRow(context.Background(), `SELECT count(*) FROM inbox WHERE event_id = $1`, eventID(m)).Scan(&rows); err != nil || rows != 1 {
			t.Fatalf("inbox rows %d (%v), want 1", rows, err)
		}
		// And a new event id for the same order: recorded, nothing more.
		again := encode(t, placed(id, line("SKU-0001", 2)))
		s.produce(again)
		s.settle(again)
		if got := s.resultsFor(id); len(got) != 1 {
			t.Fatalf("results %s, want still one", types(got))
		}
		s.wantLevel("SKU-0001", 7, 2)
	})

	t.Run("cancel of a never-seen order is recorded and blocks a late placement", func(t *testing.T) {
		s.t = t
		id := uuid.NewString()
		c := encode(t, cancelled(id))
		s.produce(c)
		s.settle(c)
		if got := s.resultsFor(id); len(got) != 0 {
			t.Fatalf("published %s for a never-seen order", types(got))
		}
		if st := s.reservationStatus(id); st != "cancelled" {
			t.Fatalf("status %q, want cancelled", st)
		}
		late := encode(t, placed(id, line("SKU-0001", 1)))
		s.produce(late)
		s.settle(late)
		if got := s.resultsFor(id); len(got) != 0 {
			t.Fatalf("late placement published %s", types(got))
		}
		s.wantLevel("SKU-0001", 7, 2)
	})

	t.Run("confirm of a never-reserved order is dead-lettered with the reason", func(t *testing.T) {
		s.t = t
		id := uuid.NewString()
		c := encode(t, confirmed(id))
		s.produce(c)
		dlq := testenv.Consume(t, s.prefix+events.DLQTopic(inventory.Name), time.Minute, func(ms []kafka.Message) bool {
			for _, m := range ms {
				if string(m.Key) == id {
					return true
				}
			}
			return false
		})
		m := dlq[len(dlq)-1]
		hs := map[string]string{}
		for _, h := range m.Headers {
			hs[h.Key] = string(h.Value)
		}
		if hs[events.HeaderID] != eventID(c) || !strings.Contains(hs[events.HeaderDLQError], "never reserved") ||
			hs[events.HeaderDLQAttempts] != "1" || hs[events.HeaderDLQSourceTopic] != s.prefix+events.TopicOrders {
			t.Fatalf("DLQ headers %v: want the event, its reason, one attempt, the source topic", hs)
		}
		if st := s.reservationStatus(id); st != "" {
			t.Fatalf("dead-lettered confirm left status %q", st)
		}
	})

	// Events beyond the contract's bounds are dead-lettered at their
	// first attempt, the reason naming the field and the bound, and the
	// order's genuine OrderPlaced after them on the same partition is
	// applied. An order of any number of lines or units was taken (the
	// over-long SKUs rejected, one by one, in a StockRejected of as many
	// lines), and a SKU or reason holding U+0000 was dead-lettered with
	// PostgreSQL's refusal of it (SQLSTATE 22021), not the contract's.
	t.Run("events beyond the contract are dead-lettered at once, naming the bound", func(t *testing.T) {
		s.t = t
		s.setStock("SKU-LIMITS", 5)
		id := uuid.NewString()
		var many []events.Line
		for i := range events.MaxLines + 1 {
			many = append(many, line(fmt.Sprintf("SKU-%04d", i), 1))
		}
		bad := []struct {
			p    events.Payload
			says string
		}{
			{placed(id, line("SKU-LIMITS\x00", 1)), `invalid field "items[0].sku": holds U+0000 (NUL)`},
			{placed(id, many...), `invalid field "items": 101 items, more than the 100 allowed`},
			{placed(id, line("SKU-"+strings.Repeat("9", 61), 1)), `invalid field "items[0].sku": 65 characters, more than the 64 allowed`},
			{placed(id, line("SKU-LIMITS", events.MaxQuantity+1)), `invalid field "items[0].quantity": 1001 is more than 1000`},
			{events.OrderCancelled{OrderID: id, Reason: "payment\x00declined", CancelledAt: time.Now().UTC()}, `invalid field "reason": holds U+0000 (NUL)`},
		}
		want := map[string]string{}
		var msgs []kafka.Message
		for _, b := range bad {
			ev := events.New(events.SourceOrder, b.p)
			m := testenv.Forged(t, "", ev)
			m.Topic = "" // the writer's
			msgs = append(msgs, m)
			want[ev.ID] = b.says
		}
		if err := s.w.WriteMessages(context.Background(), msgs...); err != nil {
			t.Fatal(err)
		}
		good := encode(t, placed(id, line("SKU-LIMITS", 2)))
		s.produce(good)
		testenv.DeadLettered(t, s.prefix+events.DLQTopic(inventory.Name), time.Minute, want)
		s.settle(good)
		if got := s.resultsFor(id); len(got) != 1 || got[0].Type != events.TypeStockReserved {
			t.Fatalf("results %s, want the genuine order's StockReserved alone", types(got))
		}
		s.wantLevel("SKU-LIMITS", 5, 2)
	})

	t.Run("lock wait is transient: retried, then applied", func(t *testing.T) {
		s.t = t
		ctx := context.Background()
		tx, err := s.db.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx) //nolint:errcheck // released below
		if _, err := tx.Exec(ctx, `SELECT 1 FROM stock WHERE sku = 'SKU-0003' FOR UPDATE`); err != nil {
			t.Fatal(err)
		}
		id := uuid.NewString()
		m := encode(t, placed(id, line("SKU-0003", 5)))
		s.produce(m)
		testenv.Eventually(t, time.Minute, "a retry after the lock timeout", func() bool {
			return strings.Contains(s.logs.String(), `"msg":"record failed; retrying"`) &&
				strings.Contains(s.logs.String(), "55P03")
		})
		if err := tx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		s.settle(m)
		if got := s.resultsFor(id); len(got) != 1 || got[0].Type != events.TypeStockReserved {
			t.Fatalf("results %s, want one StockReserved after the retry", types(got))
		}
		s.wantLevel("SKU-0003", 50, 5)
	})

	t.Run("admin PUT on a row locked past the lock timeout is 503 with Retry-After", func(t *testing.T) {
		s.t = t
		ctx := context.Background()
		tx, err := s.db.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx) //nolint:errcheck // ends the lock
		if _, err := tx.Exec(ctx, `SELECT 1 FROM stock WHERE sku = 'SKU-0003' FOR UPDATE`); err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest("PUT", s.base+"/v1/stock/SKU-0003", strings.NewReader(`{"on_hand": 60}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+adminToken)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Retry-After") == "" ||
			res.Header.Get("Content-Type") != "application/problem+json" {
			t.Fatalf("PUT on a locked row = %d Retry-After %q %s, want 503 problem+json with Retry-After",
				res.StatusCode, res.Header.Get("Retry-After"), body)
		}
		if err := tx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		s.wantLevel("SKU-0003", 50, 5) // unchanged
	})

	t.Run("admin API on the real store", func(t *testing.T) {
		s.t = t
		if code, _ := s.do("PUT", "/v1/stock/SKU-0003", "", map[string]int{"on_hand": 1}); code != http.StatusUnauthorized {
			t.Fatalf("PUT without token = %d, want 401", code)
		}
		if code, body := s.do("PUT", "/v1/stock/SKU-0003", adminToken, map[string]int{"on_hand": 4}); code != http.StatusConflict {
			t.Fatalf("PUT below reserved = %d %v, want 409", code, body)
		}
		code1, first := s.do("PUT", "/v1/stock/SKU-NEW", adminToken, map[string]int{"on_hand": 8})
		code2, second := s.do("PUT", "/v1/stock/SKU-NEW", adminToken, map[string]int{"on_hand": 8})
		if code1 != http.StatusCreated || code2 != http.StatusOK {
			t.Fatalf("PUT of a new SKU, then again = %d, %d; want 201, 200 (RFC 9110: a PUT that creates answers 201)", code1, code2)
		}
		if fmt.Sprint(first) != fmt.Sprint(second) {
			t.Fatalf("repeated PUT changed the view: %v then %v", first, second)
		}
		if code, _ := s.do("GET", "/v1/stock/SKU-0404", "", nil); code != http.StatusNotFound {
			t.Fatalf("GET unknown = %d, want 404", code)
		}
	})
}
