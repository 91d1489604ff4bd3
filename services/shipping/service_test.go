package shipping_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/makiuchi-d/gozxing"
	"github.com/makiuchi-d/gozxing/oned"
	"github.com/segmentio/kafka-go"

	"github.com/shopflow/shopflow/pkg/events"
	"github.com/shopflow/shopflow/pkg/platform/service"
	"github.com/shopflow/shopflow/pkg/platform/testenv"
	"github.com/shopflow/shopflow/services/shipping"
	"github.com/shopflow/shopflow/services/shipping/internal/pdfinspect"
	"github.com/shopflow/shopflow/services/shipping/internal/shipment"
)

// running is one shipping service run in-process on the real broker and
// PostgreSQL, as cmd/shipping runs it.
type running struct {
	t      *testing.T
	cfg    shipping.Config
	base   string
	logs   *testenv.SyncBuffer
	db     *pgxpool.Pool // the service's database, for looking behind the API
	writer *kafka.Writer
	stop   func() // shuts the service down gracefully and waits; idempotent
}

func start(t *testing.T, zone string) *running {
	t.Helper()
	return startWith(t, shipping.Config{Common: testenv.Common(t), TimeZone: zone, Cutoff: "15:00"})
}

// startWith runs the service with cfg (a restart when cfg is an earlier
// run's: same database, same topics and group).
func startWith(t *testing.T, cfg shipping.Config) *running {
	t.Helper()
	logs := &testenv.SyncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("service log:\n%s", logs)
		}
	})
	addr, stop := testenv.Serve(t, func(ctx context.Context, started func(string)) error {
		return shipping.Run(service.OnStarted(ctx, started), cfg, log)
	})
	r := &running{t: t, cfg: cfg, base: "http://" + addr, logs: logs, stop: stop}
	db, err := pgxpool.New(context.Background(), cfg.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	r.db = db
	r.writer = &kafka.Writer{Transport: &kafka.Transport{}, Addr: kafka.TCP(cfg.KafkaBrokers...), Topic: cfg.KafkaTopicPrefix + events.TopicOrders,
		Balancer: &kafka.Murmur2Balancer{}, RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond}
	t.Cleanup(func() { _ = r.writer.Close() })
	return r
}

// produce publishes events to shop.orders as the order service's relay would.
func (r *running) produce(evs ...events.Event) {
	r.t.Helper()
	for _, ev := range evs {
		m, err := events.Encode(ev)
		if err != nil {
			r.t.Fatal(err)
		}
		km := kafka.Message{Key: m.Key, Value: m.Value}
		for _, h := range m.Headers {
			km.Headers = append(km.Headers, kafka.Header(h))
		}
		if err := r.writer.WriteMessages(context.Background(), km); err != nil {
			r.t.Fatal(err)
		}
	}
}

// settled waits until the consumer has applied (or skipped) every event
// in ids and the relay has published everything they caused.
func (r *running) settled(ids ...string) {
	r.t.Helper()
	testenv.Eventually(r.t, time.Minute, "events not applied and published", func() bool {
		var applied, unsent int
		err := r.db.QueryRow(context.Background(),
			`SELECT (SELECT count(*) FROM shipping.inbox WHERE event_id = ANY($1)), (SELECT count(*) FROM shipping.outbox)`,
			ids).Scan(&applied, &unsent)
		return err == nil && applied == len(ids) && unsent == 0
	})
}

// published returns every event on the service's result topic, read to
// the end of each partition, for exact counts.
func (r *running) published() []events.Event {
	r.t.Helper()
	return readAll(r.t, r.cfg.KafkaBrokers, r.cfg.KafkaTopicPrefix+events.TopicShipments)
}

func readAll(t *testing.T, brokers []string, topic string) []events.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Transport: &kafka.Transport{}}
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil || len(md.Topics) != 1 {
		t.Fatalf("metadata of %s: %v", topic, err)
	}
	var reqs []kafka.OffsetRequest
	for _, p := range md.Topics[0].Partitions {
		reqs = append(reqs, kafka.FirstOffsetOf(p.ID), kafka.LastOffsetOf(p.ID))
	}
	offs, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		t.Fatalf("offsets of %s: %v", topic, err)
	}
	var out []events.Event
	for _, po := range offs.Topics[topic] {
		if po.Error != nil {
			t.Fatalf("offsets of %s/%d: %v", topic, po.Partition, po.Error)
		}
		if po.LastOffset <= po.FirstOffset {
			continue
		}
		rd := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: topic, Partition: po.Partition, MaxWait: 100 * time.Millisecond})
		if err := rd.SetOffset(po.FirstOffset); err != nil {
			t.Fatal(err)
		}
		for {
			m, err := rd.ReadMessage(ctx)
			if err != nil {
				t.Fatalf("read %s/%d: %v", topic, po.Partition, err)
			}
			out = append(out, decode(t, m))
			if m.Offset >= po.LastOffset-1 {
				break
			}
		}
		rd.Close()
	}
	return out
}

func decode(t *testing.T, m kafka.Message) events.Event {
	t.Helper()
	hs := make([]events.Header, len(m.Headers))
	for i, h := range m.Headers {
		hs[i] = events.Header(h)
	}
	ev, err := events.Decode(hs, m.Value)
	if err != nil {
		t.Fatalf("published record does not decode: %v", err)
	}
	return ev
}

func placedEvent(orderID string, placedAt time.Time, addr events.Address) events.Event {
	return events.New("/shopflow/order", events.OrderPlaced{
		OrderID: orderID, CustomerID: "cust-42", Currency: "USD", TotalCents: 2 * 1999,
		Items:           []events.Line{{SKU: "SKU-0001", Quantity: 2, UnitPriceCents: 1999}},
		Payment:         events.PaymentMethod{CardToken: "tok_visa"},
		ShippingAddress: addr, PlacedAt: placedAt,
	})
}

func cancelledEvent(orderID, reason string) events.Event {
	return events.New("/shopflow/order", events.OrderCancelled{OrderID: orderID, Reason: reason, CancelledAt: time.Now().UTC()})
}

var ada = events.Address{Name: "Ada Lovelace", Line1: "1 Main St", Line2: "Apt 4", City: "Springfield", PostalCode: "12345", Country: "US"}

func get(t *testing.T, url string) (*http.Response, []byte) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, body
}

type shipmentBody struct {
	OrderID        string    `json:"order_id"`
	ShipmentID     string    `json:"shipment_id"`
	Status         string    `json:"status"`
	Carrier        string    `json:"carrier"`
	TrackingNumber string    `json:"tracking_number"`
	PickupAt       time.Time `json:"pickup_at"`
	PickupUntil    time.Time `json:"pickup_until"`
	PickupZone     string    `json:"pickup_zone"`
	LabelURL       string    `json:"label_url"`
	CancelReason   string    `json:"cancel_reason"`
	Address        struct {
		Name, Line1, Line2, City, PostalCode, Country string
	} `json:"address"`
	History []struct {
		Status  string `json:"status"`
		EventID string `json:"event_id"`
	} `json:"history"`
}

func (r *running) shipment(orderID string) (int, shipmentBody, map[string]any) {
	r.t.Helper()
	res, body := get(r.t, r.base+"/v1/shipments/"+orderID)
	var s shipmentBody
	var raw map[string]any
	if err := json.Unmarshal(body, &raw); err != nil {
		r.t.Fatalf("GET shipment: %d %q is not JSON", res.StatusCode, body)
	}
	if res.StatusCode == http.StatusOK {
		if ct := res.Header.Get("Content-Type"); ct != "application/json" {
			r.t.Errorf("Content-Type = %q", ct)
		}
		_ = json.Unmarshal(body, &s)
	} else if ct := res.Header.Get("Content-Type"); ct != "application/problem+json" {
		r.t.Errorf("error Content-Type = %q, want application/problem+json", ct)
	}
	return res.StatusCode, s, raw
}

// TestOrderPlacedSchedulesAShipmentWithAScannableLabel: OrderPlaced in,
// ShipmentScheduled out, the shipment readable over HTTP and its label a
// PDF showing the address with a barcode that scans as the tracking number.
func TestOrderPlacedSchedulesAShipmentWithAScannableLabel(t *testing.T) {
	t.Parallel()
	r := start(t, "America/New_York")
	orderID := uuid.NewString()
	// Friday 2026-11-27 16:00 in New York: after the cutoff, so received
	// Monday and picked up Tuesday 09:00 local.
	placedAt := time.Date(2026, 11, 27, 21, 0, 0, 0, time.UTC)
	ev := placedEvent(orderID, placedAt, ada)
	r.produce(ev)

	got := testenv.Consume(t, r.cfg.KafkaTopicPrefix+events.TopicShipments, time.Minute, testenv.Count(1))
	out := decode(t, got[0])
	sched, ok := out.Payload.(events.ShipmentScheduled)
	if !ok {
		t.Fatalf("published %s, want ShipmentScheduled", out.Type)
	}
	if out.Source != shipping.Source || out.Subject != orderID || string(got[0].Key) != orderID {
		t.Errorf("envelope: source %q subject %q key %q", out.Source, out.Subject, got[0].Key)
	}
	wantPickup := time.Date(2026, 12, 1, 14, 0, 0, 0, time.UTC) // 09:00 EST
	if sched.OrderID != orderID || !sched.PickupAt.Equal(wantPickup) || sched.Carrier != shipment.Carrier {
		t.Errorf("ShipmentScheduled = %+v; want pickup %s", sched, wantPickup)
	}
	if err := shipment.ValidTrackingNumber(sched.TrackingNumber); err != nil {
		t.Error(err)
	}

	status, s, _ := r.shipment(orderID)
	if status != http.StatusOK {
		t.Fatalf("GET shipment = %d", status)
	}
	if s.Status != "scheduled" || s.TrackingNumber != sched.TrackingNumber || s.ShipmentID != sched.ShipmentID ||
		!s.PickupAt.Equal(wantPickup) || s.PickupUntil.Sub(s.PickupAt) != 3*time.Hour || s.PickupZone != "America/New_York" ||
		s.LabelURL != "/v1/shipments/"+orderID+"/label" || s.Address.Name != ada.Name || s.Address.Country != "US" {
		t.Errorf("GET shipment = %+v", s)
	}
	if _, off := s.PickupAt.Zone(); off != -5*3600 {
		t.Errorf("pickup_at %s is not given in the warehouse zone", s.PickupAt)
	}
	if len(s.History) != 1 || s.History[0].Status != "scheduled" || s.History[0].EventID != ev.ID {
		t.Errorf("history = %+v", s.History)
	}
	// An accent given as a combining mark (another producer of
	// OrderPlaced may send one) is stored and printed composed.
	decomposedID := uuid.NewString()
	zoe := ada
	zoe.Name = "Zoe\u0308 Lukasiewicz"
	r.produce(placedEvent(decomposedID, placedAt, zoe))
	testenv.Consume(t, r.cfg.KafkaTopicPrefix+events.TopicShipments, time.Minute, testenv.Count(2))
	if status, zs, _ := r.shipment(decomposedID); status != http.StatusOK || zs.Address.Name != "Zo\u00eb Lukasiewicz" {
		t.Errorf("shipment to %q: %d, name %q; want it scheduled to the composed \"Zo\u00eb Lukasiewicz\"", zoe.Name, status, zs.Address.Name)
	}
	// The order API takes an order id in any form uuid.Parse reads;
	// this one finds the same shipment (and label) by it.
	if status, us, _ := r.shipment(strings.ToUpper(orderID)); status != http.StatusOK || us.OrderID != orderID || len(us.History) != 1 {
		t.Errorf("GET by the upper-case id = %d %+v", status, us)
	}
	if res, _ := get(t, r.base+"/v1/shipments/"+strings.ToUpper(orderID)+"/label"); res.StatusCode != http.StatusOK {
		t.Errorf("GET label by the upper-case id = %d", res.StatusCode)
	}
	if status, es, _ := r.shipment(fmt.Sprintf("%%%02X", orderID[0]) + orderID[1:]); status != http.StatusOK || es.OrderID != orderID {
		t.Errorf("GET with the id's first character escaped = %d %+v", status, es)
	}

	res, pdf := get(t, r.base+s.LabelURL)
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "application/pdf" {
		t.Fatalf("GET label = %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	if !bytes.HasPrefix(pdf, []byte("%PDF-")) || len(pdf) < 1000 {
		t.Fatalf("label is not a PDF: %d bytes starting %q", len(pdf), pdf[:min(len(pdf), 8)])
	}
	text := pdfinspect.Text(t, pdf)
	for _, want := range []string{sched.TrackingNumber, ada.Name, ada.Line1, ada.Line2, "Springfield 12345", "Tue 1 Dec 2026 09:00-12:00"} {
		if !bytes.Contains(text, []byte(want)) {
			t.Errorf("label does not show %q", want)
		}
	}
	imgs := pdfinspect.Images(t, pdf)
	if len(imgs) != 1 {
		t.Fatalf("label has %d images, want 1 barcode", len(imgs))
	}
	bmp, err := gozxing.NewBinaryBitmapFromImage(imgs[0])
	if err != nil {
		t.Fatal(err)
	}
	scan, err := oned.NewCode128Reader().Decode(bmp, nil)
	if err != nil || scan.GetText() != sched.TrackingNumber {
		t.Errorf("label barcode scans as %v, %v; want %s", scan, err, sched.TrackingNumber)
	}
}

// TestDuplicatesAndCompensationsHaveOneEffect: a redelivered OrderPlaced
// (same event id), a re-published one (new id), a redelivered and a
// re-published OrderCancelled: one ShipmentScheduled, one
// ShipmentCancelled, nothing more; and a cancellation of an order never
// seen is recorded, emits nothing, and stops a late OrderPlaced.
func TestDuplicatesAndCompensationsHaveOneEffect(t *testing.T) {
	t.Parallel()
	r := start(t, "UTC")
	orderID, unknownID := uuid.NewString(), uuid.NewString()
	placed := placedEvent(orderID, time.Now().UTC(), ada)
	placedAgain := placedEvent(orderID, placed.Payload.(events.OrderPlaced).PlacedAt, ada)
	cancel := cancelledEvent(orderID, "payment declined")
	cancelAgain := cancelledEvent(orderID, "payment declined")
	confirmAfterCancel := events.New("/shopflow/order", events.OrderConfirmed{OrderID: orderID, ConfirmedAt: time.Now().UTC()})
	unknownCancel := cancelledEvent(unknownID, "customer cancelled")
	latePlaced := placedEvent(unknownID, time.Now().UTC(), ada)

	r.produce(placed, placed, placedAgain)
	r.settled(placed.ID, placedAgain.ID)
	_, before, _ := r.shipment(orderID)
	r.produce(cancel, cancel, cancelAgain, confirmAfterCancel, unknownCancel, unknownCancel, latePlaced)
	r.settled(placed.ID, placedAgain.ID, cancel.ID, cancelAgain.ID, confirmAfterCancel.ID, unknownCancel.ID, latePlaced.ID)

	var kinds []string
	for _, ev := range r.published() {
		kinds = append(kinds, fmt.Sprintf("%s:%s", ev.Type, ev.Subject))
		if c, ok := ev.Payload.(events.ShipmentCancelled); ok && (c.TrackingNumber != before.TrackingNumber || c.ShipmentID != before.ShipmentID) {
			t.Errorf("ShipmentCancelled = %+v, want the scheduled shipment %s", c, before.TrackingNumber)
		}
	}
	want := []string{string(events.TypeShipmentScheduled) + ":" + orderID, string(events.TypeShipmentCancelled) + ":" + orderID}
	if strings.Join(kinds, " ") != strings.Join(want, " ") {
		t.Errorf("published %v, want exactly %v", kinds, want)
	}

	status, s, _ := r.shipment(orderID)
	if status != http.StatusOK || s.Status != "cancelled" || s.CancelReason != "payment declined" || s.TrackingNumber != before.TrackingNumber {
		t.Errorf("after cancel: %d %+v", status, s)
	}
	if len(s.History) != 2 || s.History[1].Status != "cancelled" || s.History[1].EventID != cancel.ID {
		t.Errorf("history = %+v, want scheduled then one cancellation", s.History)
	}
	// A voided label is not offered, and not served.
	if s.LabelURL != "" {
		t.Errorf("a cancelled shipment offers its label at %q", s.LabelURL)
	}
	res, body := get(t, r.base+"/v1/shipments/"+orderID+"/label")
	if res.StatusCode != http.StatusGone || res.Header.Get("Content-Type") != "application/problem+json" {
		t.Errorf("label of a cancelled shipment = %d %s %s", res.StatusCode, res.Header.Get("Content-Type"), body)
	}

	status, _, problem := r.shipment(unknownID)
	if status != http.StatusNotFound || !strings.Contains(fmt.Sprint(problem["detail"]), "cancelled") ||
		problem["cancellation_recorded_at"] == nil {
		t.Errorf("order cancelled before placement: %d %v", status, problem)
	}
	var reason string
	var ignored *time.Time
	err := r.db.QueryRow(context.Background(),
		`SELECT reason, placed_ignored_at FROM shipping.unscheduled_cancellations WHERE order_id = $1`, unknownID).Scan(&reason, &ignored)
	if err != nil || reason != "customer cancelled" || ignored == nil {
		t.Errorf("recorded cancellation: %q, placed ignored at %v, err %v", reason, ignored, err)
	}
}

// TestUndeliverableAddressIsDeadLettered: an address the carrier cannot
// take is a permanent error: straight to shop.dlq.shipping with the
// reason, no shipment, and the partition moves on.
func TestUndeliverableAddressIsDeadLettered(t *testing.T) {
	t.Parallel()
	r := start(t, "UTC")
	bad := ada
	bad.Country = "BR"
	badID, goodID := uuid.NewString(), uuid.NewString()
	badEv := placedEvent(badID, time.Now().UTC(), bad)
	r.produce(badEv)

	dl := testenv.Consume(t, r.cfg.KafkaTopicPrefix+events.DLQTopic(shipping.Name), time.Minute, testenv.Count(1))
	hs := map[string]string{}
	for _, h := range dl[0].Headers {
		hs[h.Key] = string(h.Value)
	}
	if hs[events.HeaderID] != badEv.ID || !strings.Contains(hs[events.HeaderDLQError], "shipping_address.country") ||
		!strings.Contains(hs[events.HeaderDLQError], `"BR"`) || hs[events.HeaderDLQAttempts] != "1" {
		t.Errorf("DLQ headers = %v; want the event, the reason naming the country, one attempt", hs)
	}
	if status, _, _ := r.shipment(badID); status != http.StatusNotFound {
		t.Errorf("GET shipment of the dead-lettered order = %d, want 404", status)
	}
	good := placedEvent(goodID, time.Now().UTC(), ada)
	r.produce(good)
	r.settled(good.ID)
	if status, _, _ := r.shipment(goodID); status != http.StatusOK {
		t.Errorf("the next order was not scheduled: %d", status)
	}
}

// Events beyond the contract's bounds are dead-lettered at their first
// attempt, the reason naming the field and the bound, and the order's
// genuine OrderPlaced after them, on the same partition, is scheduled. A
// cancellation whose reason held U+0000 failed its insert (PostgreSQL
// cannot store it in text) five times before it was dead-lettered, and
// an order of any number of lines was booked.
func TestEventsBeyondTheContractAreDeadLettered(t *testing.T) {
	t.Parallel()
	r := start(t, "UTC")
	id := uuid.NewString()
	good := placedEvent(id, time.Now().UTC(), ada)
	many := good.Payload.(events.OrderPlaced)
	many.Items, many.TotalCents = nil, 0
	for i := range events.MaxLines + 1 {
		many.Items = append(many.Items, events.Line{SKU: fmt.Sprintf("SKU-%04d", i), Quantity: 1, UnitPriceCents: 10})
		many.TotalCents += 10
	}
	nul, long := good.Payload.(events.OrderPlaced), good.Payload.(events.OrderPlaced)
	nul.ShippingAddress.Line2 = "Apt\x004"
	long.ShippingAddress.Name = strings.Repeat("A", 256)
	bad := []struct {
		p    events.Payload
		says string
	}{
		{events.OrderCancelled{OrderID: id, Reason: "customer\x00cancelled", CancelledAt: time.Now().UTC()}, `invalid field "reason": holds U+0000 (NUL)`},
		{many, `invalid field "items": 101 items, more than the 100 allowed`},
		{nul, `invalid field "shipping_address.line2": holds U+0000 (NUL)`},
		{long, `invalid field "shipping_address.name": 256 characters, more than the 255 allowed`},
	}
	want := map[string]string{}
	for _, b := range bad {
		ev := events.New(events.SourceOrder, b.p)
		m := testenv.Forged(t, "", ev)
		m.Topic = "" // the writer's
		if err := r.writer.WriteMessages(context.Background(), m); err != nil {
			t.Fatal(err)
		}
		want[ev.ID] = b.says
	}
	r.produce(good)
	testenv.DeadLettered(t, r.cfg.KafkaTopicPrefix+events.DLQTopic(shipping.Name), time.Minute, want)
	r.settled(good.ID)
	if status, s, _ := r.shipment(id); status != http.StatusOK || s.Status != "scheduled" || s.Address.Name != ada.Name {
		t.Errorf("shipment of the genuine order: %d %+v, want scheduled to %s", status, s, ada.Name)
	}
}

// TestTransientFailureIsRetried: while the shipments table is unavailable
// the handler fails; the record is retried with backoff in place, not
// dead-lettered, and applied once the table is back.
func TestTransientFailureIsRetried(t *testing.T) {
	t.Parallel()
	r := start(t, "UTC")
	ctx := context.Background()
	if _, err := r.db.Exec(ctx, `ALTER TABLE shipping.shipments RENAME TO shipments_away`); err != nil {
		t.Fatal(err)
	}
	orderID := uuid.NewString()
	ev := placedEvent(orderID, time.Now().UTC(), ada)
	r.produce(ev)
	testenv.Eventually(t, time.Minute, "no retry logged", func() bool {
		return strings.Contains(r.logs.String(), "record failed; retrying")
	})
	if _, err := r.db.Exec(ctx, `ALTER TABLE shipping.shipments_away RENAME TO shipments`); err != nil {
		t.Fatal(err)
	}
	r.settled(ev.ID)
	if status, s, _ := r.shipment(orderID); status != http.StatusOK || s.Status != "scheduled" {
		t.Errorf("after recovery: %d %+v", status, s)
	}
	if strings.Contains(r.logs.String(), "dead-lettering record") {
		t.Error("a transient failure was dead-lettered")
	}
}

// TestHTTPErrors: bad and unknown order ids are problem+json naming the field.
func TestHTTPErrors(t *testing.T) {
	t.Parallel()
	r := start(t, "UTC")
	for _, c := range []struct {
		path   string
		status int
		field  string
	}{
		{"/v1/shipments/" + uuid.NewString(), http.StatusNotFound, ""},
		{"/v1/shipments/" + uuid.NewString() + "/label", http.StatusNotFound, ""},
		{"/v1/shipments/" + strings.Repeat("x", 200), http.StatusBadRequest, "order_id"},
		{"/v1/shipments/a%20b/label", http.StatusBadRequest, "order_id"},
		{"/v1/shipments/%00", http.StatusBadRequest, "order_id"},
	} {
		res, body := get(t, r.base+c.path)
		var p struct {
			Status int `json:"status"`
			Errors []struct {
				Field string `json:"field"`
			} `json:"errors"`
		}
		if err := json.Unmarshal(body, &p); err != nil || res.StatusCode != c.status || p.Status != c.status ||
			res.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("GET %s = %d %s %s", c.path, res.StatusCode, res.Header.Get("Content-Type"), body)
			continue
		}
		if c.field != "" && (len(p.Errors) != 1 || p.Errors[0].Field != c.field) {
			t.Errorf("GET %s: errors %+v do not name %s", c.path, p.Errors, c.field)
		}
	}
}

// TestLoadConfig: the shipping variables are read, defaulted and checked,
// each problem naming its variable. Not parallel: it sets the environment.
func TestLoadConfig(t *testing.T) {
	t.Setenv("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
	t.Setenv("KAFKA_BROKERS", "127.0.0.1:9092")
	t.Setenv("HTTP_ADDR", "")
	t.Setenv("SHIPPING_TIMEZONE", "")
	t.Setenv("SHIPPING_CUTOFF", "")
	cfg, err := shipping.LoadConfig()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTPAddr != ":8083" || cfg.TimeZone != "UTC" || cfg.Cutoff != "15:00" {
		t.Errorf("defaults: %+v", cfg)
	}
	t.Setenv("SHIPPING_TIMEZONE", "Mars/Olympus_Mons")
	t.Setenv("SHIPPING_CUTOFF", "25:00")
	_, err = shipping.LoadConfig()
	if err == nil {
		t.Fatal("LoadConfig accepted a bad zone and cutoff")
	}
	for _, want := range []string{"config: SHIPPING_TIMEZONE: \"Mars/Olympus_Mons\"", "config: SHIPPING_CUTOFF: \"25:00\""} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	t.Setenv("SHIPPING_TIMEZONE", "Local") // the host's zone, which Go's LoadLocation takes
	t.Setenv("SHIPPING_CUTOFF", "")
	if _, err = shipping.LoadConfig(); err == nil || !strings.Contains(err.Error(), `config: SHIPPING_TIMEZONE: "Local" is not an IANA time zone name`) {
		t.Errorf("SHIPPING_TIMEZONE=Local: %v, want refused", err)
	}
	t.Setenv("SHIPPING_TIMEZONE", "Asia/Tokyo")
	t.Setenv("SHIPPING_CUTOFF", "12:30")
	cfg, err = shipping.LoadConfig()
	if err != nil || cfg.TimeZone != "Asia/Tokyo" || cfg.Cutoff != "12:30" {
		t.Errorf("LoadConfig = %+v, %v", cfg, err)
	}
}

// caughtUp reports whether the service's consumer group has committed
// offsets up to the end of every partition of shop.orders.
func (r *running) caughtUp() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	topic := r.cfg.KafkaTopicPrefix + events.TopicOrders
	client := &kafka.Client{Addr: kafka.TCP(r.cfg.KafkaBrokers...), Transport: &kafka.Transport{}}
	var reqs []kafka.OffsetRequest
	var parts []int
	for p := range 12 {
		reqs = append(reqs, kafka.LastOffsetOf(p))
		parts = append(parts, p)
	}
	ends, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		return false
	}
	committed, err := client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: r.cfg.KafkaTopicPrefix + shipping.Name,
		Topics: map[string][]int{topic: parts}})
	if err != nil || committed.Error != nil {
		return false
	}
	at := map[int]int64{}
	for _, p := range committed.Topics[topic] {
		at[p.Partition] = p.CommittedOffset
	}
	for _, e := range ends.Topics[topic] {
		if e.LastOffset > 0 && at[e.Partition] < e.LastOffset {
			return false
		}
	}
	return true
}

// TestRedeliveryAfterRestartHasNoEffect: the service restarts and its
// group's offsets are gone (as after a crash between the database commit
// and the offset commit, for every record at once): everything is
// delivered again, the inbox absorbs it, and nothing new is published.
func TestRedeliveryAfterRestartHasNoEffect(t *testing.T) {
	t.Parallel()
	r := start(t, "UTC")
	orderID := uuid.NewString()
	placed, cancel := placedEvent(orderID, time.Now().UTC(), ada), cancelledEvent(orderID, "out of stock")
	r.produce(placed, cancel)
	r.settled(placed.ID, cancel.ID)
	testenv.Eventually(t, time.Minute, "offsets not committed", r.caughtUp)
	r.stop()

	ctx := context.Background()
	client := &kafka.Client{Addr: kafka.TCP(r.cfg.KafkaBrokers...), Transport: &kafka.Transport{}}
	group := r.cfg.KafkaTopicPrefix + shipping.Name
	testenv.Eventually(t, 30*time.Second, "consumer group not deleted", func() bool {
		res, err := client.DeleteGroups(ctx, &kafka.DeleteGroupsRequest{GroupIDs: []string{group}})
		return err == nil && res.Errors[group] == nil
	})

	if r.caughtUp() {
		t.Fatal("the group's offsets survived its deletion: nothing would be redelivered")
	}
	again := startWith(t, r.cfg)
	testenv.Eventually(t, time.Minute, "records not redelivered", again.caughtUp)
	again.settled(placed.ID, cancel.ID)
	var kinds []events.Type
	for _, ev := range again.published() {
		kinds = append(kinds, ev.Type)
	}
	if len(kinds) != 2 || kinds[0] != events.TypeShipmentScheduled || kinds[1] != events.TypeShipmentCancelled {
		t.Errorf("published %v after redelivery, want only the first run's scheduled and cancelled", kinds)
	}
}
