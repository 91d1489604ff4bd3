// Package httpapi serves the payment service's read API:
//
//	GET /v1/payments/{order_id}  the order's payment with its status history
//
// Errors are RFC 9457 problem+json: 400 naming the order_id path parameter
// when it cannot be an order id, 404 when the order has no payment here.
package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"

	"github.com/shopflow/shopflow/pkg/platform/httpserver"
	"github.com/shopflow/shopflow/services/payment/internal/payment"
	"github.com/shopflow/shopflow/services/payment/internal/store"
)

// maxOrderIDLen bounds an order id; ids are UUIDs, so anything far longer
// is a client mistake, not a lookup.
const maxOrderIDLen = 128

// API is the HTTP resource for payments.
type API struct {
	db store.Querier
}

// New returns the API reading through db (the service's pool).
func New(db store.Querier) *API { return &API{db: db} }

// Routes mounts the endpoints on r.
func (a *API) Routes(r chi.Router) {
	r.Get("/v1/payments/{order_id}", a.get)
}

// Payment is the JSON body of GET /v1/payments/{order_id}.
type Payment struct {
	OrderID           string    `json:"order_id"`
	PaymentID         string    `json:"payment_id,omitempty"`
	Status            string    `json:"status"`
	AmountCents       int64     `json:"amount_cents"`
	Currency          string    `json:"currency,omitempty"`
	AuthorizationCode string    `json:"authorization_code,omitempty"`
	Reason            string    `json:"reason,omitempty"`
	History           []Entry   `json:"history"`
	CreatedAt         time.Time `json:"created_at"`
	UpdatedAt         time.Time `json:"updated_at"`
}

// Entry is one line of a payment's status history.
type Entry struct {
	Status    string    `json:"status"`
	At        time.Time `json:"at"`
	Detail    string    `json:"detail"`
	EventType string    `json:"event_type"`
	EventID   string    `json:"event_id"`
}

func (a *API) get(w http.ResponseWriter, r *http.Request) {
	id := httpserver.PathParam(r, "order_id")
	if msg := checkOrderID(id); msg != "" {
		httpserver.WriteProblem(w, r, httpserver.Problem{Status: http.StatusBadRequest,
			Detail: "order_id " + msg, Errors: []httpserver.FieldError{{Field: "order_id", Message: msg}}})
		return
	}
	body, err := a.load(r.Context(), id)
	if u, perr := uuid.Parse(id); errors.Is(err, store.ErrNotFound) && perr == nil && u.String() != id {
		// Order ids are UUIDs, which the order service writes in
		// their canonical lower-case form; the order API accepts any
		// form uuid.Parse does, so this API finds the same order by it.
		body, err = a.load(r.Context(), u.String())
	}
	if errors.Is(err, store.ErrNotFound) {
		httpserver.WriteProblem(w, r, httpserver.Problem{Status: http.StatusNotFound,
			Detail: fmt.Sprintf("no payment for order %q", id)})
		return
	}
	if err != nil {
		httpserver.WriteError(w, r, err)
		return
	}
	httpserver.WriteJSON(w, http.StatusOK, body)
}

func (a *API) load(ctx context.Context, orderID string) (Payment, error) {
	p, hist, err := store.Read(ctx, a.db, orderID)
	if err != nil {
		return Payment{}, err
	}
	return toJSON(p, hist), nil
}

func toJSON(p *payment.Payment, hist []store.Entry) Payment {
	out := Payment{OrderID: p.OrderID, PaymentID: p.PaymentID, Status: string(p.Status),
		AmountCents: p.AmountCents, Currency: p.Currency, AuthorizationCode: p.AuthorizationCode,
		Reason: p.Reason, History: make([]Entry, len(hist)), CreatedAt: p.CreatedAt.UTC(), UpdatedAt: p.UpdatedAt.UTC()}
	for i, e := range hist {
		out.History[i] = Entry{Status: string(e.Status), At: e.At.UTC(), Detail: e.Detail, EventType: e.EventType, EventID: e.EventID}
	}
	return out
}

// checkOrderID says what is wrong with id as an order id, or "".
func checkOrderID(id string) string {
	switch {
	case id == "":
		return "is empty"
	case len(id) > maxOrderIDLen:
		return fmt.Sprintf("is longer than %d bytes", maxOrderIDLen)
	case !utf8.ValidString(id):
		return "is not valid UTF-8"
	}
	for _, c := range id {
		if unicode.IsControl(c) || unicode.IsSpace(c) {
			return "contains whitespace or control characters"
		}
	}
	return ""
}
