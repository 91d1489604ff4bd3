package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/google/uuid"

	"github.com/shopflow/shopflow/pkg/events"
	"github.com/shopflow/shopflow/pkg/platform/httpserver"
	"github.com/shopflow/shopflow/services/order/internal/order"
	"github.com/shopflow/shopflow/services/order/internal/store"
)

// statusView is an order's progress: what the order page shows live and
// what each server-sent event carries.
type statusView struct {
	ID         string `json:"id"`
	Status     string `json:"status"`
	StatusText string `json:"status_text"`
	Terminal   bool   `json:"terminal"`
	// Settled: nothing will change any more (confirmed, or cancelled with
	// every step failed or compensated).
	Settled bool `json:"settled"`
	// Reason is why the order was cancelled, in words (reasonText); the
	// API's reason stays the order's own.
	Reason         string     `json:"reason"`
	Steps          []stepView `json:"steps"`
	TrackingNumber string     `json:"tracking_number"`
	LabelURL       string     `json:"label_url"`
	UpdatedAt      time.Time  `json:"updated_at"`
}

// stepView is one saga step. State is one of pending, done, failed,
// undone (compensated); the page styles by it and reads Label aloud.
type stepView struct {
	Key   string `json:"key"`
	Name  string `json:"name"`
	State string `json:"state"`
	Label string `json:"label"`
}

// orderPage is the order page's data: the live part and the fixed part.
type orderPage struct {
	statusView
	CustomerID string
	Lines      []lineView
	Total      string
	Address    order.Address
	// CityLines are the address's city and postal code as its country
	// writes them (events.Address.CityLines, as on the shipping label).
	CityLines []string
	PlacedAt  time.Time
}

type lineView struct {
	SKU, Name         string
	Quantity          int
	UnitPrice, Amount string
}

var statusTexts = map[order.Status]string{
	order.Pending:   "In progress",
	order.Confirmed: "Confirmed",
	order.Cancelled: "Cancelled",
}

func (wb *Web) status(o order.Order) statusView {
	v := statusView{
		ID: o.ID, Status: string(o.Status), StatusText: statusTexts[o.Status], Terminal: o.Status != order.Pending,
		Reason: reasonText(o), UpdatedAt: o.UpdatedAt,
		Steps: []stepView{
			step("payment", "Payment", o.Steps.Payment),
			step("inventory", "Stock", o.Steps.Inventory),
			step("shipping", "Shipping", o.Steps.Shipping),
		},
	}
	v.Settled = settled(o.Status, v.Steps)
	// The tracking number and label once the order is confirmed, not as
	// soon as shipping has booked: a pending order can still be declined,
	// and its shipment cancelled, after the customer was shown a tracking
	// number.
	if o.Status == order.Confirmed && o.Steps.Shipping == order.ShipmentScheduled && o.TrackingNumber != "" {
		v.TrackingNumber = o.TrackingNumber
		v.LabelURL = "/orders/" + url.PathEscape(o.ID) + "/label" // passed on from shipping (label)
	}
	return v
}

// settled reports whether an order's page can stop following it: a
// confirmed order is done; a cancelled one still sees its compensations
// (payment voided, stock released, shipment cancelled) arrive.
func settled(status order.Status, steps []stepView) bool {
	switch status {
	case order.Confirmed:
		return true
	case order.Cancelled:
		for _, s := range steps {
			if s.State != "failed" && s.State != "undone" {
				return false
			}
		}
		return true
	}
	return false
}

// step describes a step's state for people.
func step(key, name string, s order.Step) stepView {
	state, label := "pending", "waiting"
	switch s {
	case order.PaymentAuthorized:
		state, label = "done", "authorized"
	case order.StockReserved:
		state, label = "done", "reserved"
	case order.ShipmentScheduled:
		state, label = "done", "scheduled"
	case order.PaymentDeclined:
		state, label = "failed", "declined"
	case order.StockRejected:
		state, label = "failed", "out of stock"
	case order.PaymentVoided:
		state, label = "undone", "authorization voided"
	case order.PaymentRefunded:
		state, label = "undone", "refunded"
	case order.StockReleased:
		state, label = "undone", "reservation released"
	case order.ShipmentCancelled:
		state, label = "undone", "shipment cancelled"
	}
	return stepView{Key: key, Name: name, State: state, Label: label}
}

func (wb *Web) orderView(o order.Order) orderPage {
	p := orderPage{statusView: wb.status(o), CustomerID: o.CustomerID, Address: o.Address, PlacedAt: o.PlacedAt,
		CityLines: events.Address(o.Address).CityLines(), Total: formatMoney(o.TotalCents, o.Currency)}
	for _, l := range o.Lines {
		p.Lines = append(p.Lines, lineView{SKU: l.SKU, Name: l.Name, Quantity: l.Quantity,
			UnitPrice: formatMoney(l.UnitPriceCents, o.Currency), Amount: formatMoney(l.TotalCents(), o.Currency)})
	}
	return p
}

// Stream limits. A stream ends after maxStream (the browser's
// EventSource reconnects by itself); heartbeats keep idle proxies from
// cutting it.
const (
	maxStream = 10 * time.Minute
	heartbeat = 15 * time.Second
	// boundedStream is the lifetime when the write deadline cannot be
	// lifted: below the server's 30 s WriteTimeout.
	boundedStream = 25 * time.Second
	// compensationWait is how long a stream follows a cancelled order's
	// compensations before it gives up on one that never reports.
	compensationWait = 30 * time.Second
	// pollTimeout bounds one read of the followed orders' rows: a
	// database that does not answer (frozen, the table locked) fails the
	// read, and the next poll tries again.
	pollTimeout = 5 * time.Second
)

// polled is one poll's outcome: the order's row, or why it was not read.
type polled struct {
	o   order.Order
	err error
}

// orderEvents streams an order's status as server-sent events (event
// "status", data a statusView) whenever it changes, following its row
// through the shared poll (watcher); the stream ends once the order is
// settled, or compensationWait after it was cancelled. The poll runs
// apart from the loop that writes the stream, so a read the database
// holds never holds back the heartbeats: without them the page cannot
// tell a quiet order from a dead stream, and an idle proxy cuts the
// stream. Streams are limited in all and per client (streamLimits).
func (wb *Web) orderEvents(w http.ResponseWriter, r *http.Request) {
	id, err := uuid.Parse(httpserver.PathParam(r, "id"))
	if err != nil {
		httpserver.WriteProblem(w, r, badOrderID)
		return
	}
	release, ok := wb.streams.acquire(w, r)
	if !ok {
		return
	}
	defer release()
	ctx := r.Context()
	o, err := store.GetOrderRow(ctx, wb.pool, id.String())
	if errors.Is(err, store.ErrNotFound) {
		httpserver.WriteProblem(w, r, noSuchOrder)
		return
	}
	if err != nil {
		httpserver.WriteError(w, r, err)
		return
	}
	// The stream outlives the server's request deadline and write
	// timeout by design, within a lifetime of its own; the first read
	// above stayed under the deadline, so a stalled database is a 503.
	if !httpserver.LiftDeadline(r) {
		httpserver.WriteError(w, r, context.Cause(ctx))
		return
	}
	rc := http.NewResponseController(w)
	lifetime := maxStream
	if err := rc.SetWriteDeadline(time.Time{}); err != nil {
		lifetime = boundedStream
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return // the headers are the answer; a stream would run with no one reading
	}

	// send writes the order's status; done means the stream may end.
	var terminalAt time.Time
	send := func(o order.Order) (done bool, err error) {
		v := wb.status(o)
		b, err := json.Marshal(v)
		if err != nil {
			return true, err
		}
		if _, err := fmt.Fprintf(w, "event: status\ndata: %s\n\n", b); err != nil {
			return true, err
		}
		if v.Terminal && terminalAt.IsZero() {
			terminalAt = time.Now()
		}
		return v.Settled, rc.Flush()
	}
	// retry: how long the browser waits before reconnecting.
	if _, err := fmt.Fprint(w, "retry: 2000\n\n"); err != nil {
		return
	}
	if done, err := send(o); err != nil || done {
		return
	}
	rows, unfollow := wb.watcher.follow(o.ID)
	defer unfollow()
	beat := time.NewTicker(heartbeat)
	defer beat.Stop()
	end := time.NewTimer(lifetime)
	defer end.Stop()
	// The server's graceful shutdown waits for handlers: a stream ends as
	// it begins, or it would hold the shutdown to its deadline.
	stopping := httpserver.Stopping(ctx)
	last := o
	for {
		select {
		case <-ctx.Done():
			return
		case <-stopping:
			return
		case <-end.C:
			return
		case <-beat.C:
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
				return
			}
			if rc.Flush() != nil {
				return
			}
		case p := <-rows:
			if !terminalAt.IsZero() && time.Since(terminalAt) > compensationWait {
				return
			}
			if p.err != nil {
				continue // the watcher logged it; the next poll tries again
			}
			o := p.o
			if o.UpdatedAt.Equal(last.UpdatedAt) && o.Status == last.Status && o.Steps == last.Steps {
				continue
			}
			last = o
			if done, err := send(o); err != nil || done {
				return
			}
		}
	}
}
