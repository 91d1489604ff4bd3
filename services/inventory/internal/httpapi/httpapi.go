// Package httpapi is the inventory's REST API: GET /v1/stock/{sku} for
// anyone, PUT /v1/stock/{sku} for the admin (Authorization: Bearer
// ADMIN_TOKEN). Every failure is an RFC 9457 problem naming the field at
// fault; one function (writeErr) maps the stock package's errors to HTTP.
package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/shopflow/shopflow/pkg/platform/httpserver"
	"github.com/shopflow/shopflow/pkg/platform/pg"
	"github.com/shopflow/shopflow/services/inventory/internal/stock"
)

// Stocker is what the API needs from the app layer.
type Stocker interface {
	Stock(ctx context.Context, sku string) (stock.Level, error)
	SetOnHand(ctx context.Context, sku string, n int64) (l stock.Level, created bool, err error)
}

// API serves the stock endpoints.
type API struct {
	svc        Stocker
	adminToken string
}

// New returns the API. An empty adminToken disables the admin endpoints
// (403), so a deployment that forgot it fails closed.
func New(svc Stocker, adminToken string) *API {
	return &API{svc: svc, adminToken: adminToken}
}

// Routes mounts the endpoints on r.
func (a *API) Routes(r chi.Router) {
	r.Get("/v1/stock/{sku}", a.get)
	r.With(httpserver.RequireToken(a.adminToken, "inventory admin")).Put("/v1/stock/{sku}", a.put)
}

// View is the JSON form of a stock level.
type View struct {
	SKU       string    `json:"sku"`
	OnHand    int64     `json:"on_hand"`
	Reserved  int64     `json:"reserved"`
	Available int64     `json:"available"`
	UpdatedAt time.Time `json:"updated_at"`
}

func view(l stock.Level) View {
	return View{SKU: l.SKU, OnHand: l.OnHand, Reserved: l.Reserved, Available: l.Available(), UpdatedAt: l.UpdatedAt.UTC()}
}

// PutRequest is the body of PUT /v1/stock/{sku}. OnHand is a pointer so
// a missing field is told apart from zero.
type PutRequest struct {
	OnHand *int64 `json:"on_hand"`
}

func (a *API) get(w http.ResponseWriter, r *http.Request) {
	sku, ok := skuParam(w, r)
	if !ok {
		return
	}
	l, err := a.svc.Stock(r.Context(), sku)
	if err != nil {
		writeErr(w, r, sku, err)
		return
	}
	httpserver.WriteJSON(w, http.StatusOK, view(l))
}

func (a *API) put(w http.ResponseWriter, r *http.Request) {
	sku, ok := skuParam(w, r)
	if !ok {
		return
	}
	var req PutRequest
	if err := httpserver.DecodeJSON(w, r, &req); err != nil {
		httpserver.WriteError(w, r, err)
		return
	}
	if req.OnHand == nil {
		fieldProblem(w, r, "on_hand", "is required")
		return
	}
	if n := *req.OnHand; n < 0 || n > stock.MaxOnHand {
		fieldProblem(w, r, "on_hand", fmt.Sprintf("must be between 0 and %d, not %d", stock.MaxOnHand, n))
		return
	}
	l, created, err := a.svc.SetOnHand(r.Context(), sku, *req.OnHand)
	if err != nil {
		writeErr(w, r, sku, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated // RFC 9110 9.3.4: a PUT that creates says so
	}
	httpserver.WriteJSON(w, status, view(l))
}

func skuParam(w http.ResponseWriter, r *http.Request) (string, bool) {
	sku := chi.URLParam(r, "sku")
	if !stock.ValidSKU(sku) {
		fieldProblem(w, r, "sku", `must be 1 to 64 of A-Z, 0-9 and "-", not starting with "-" (e.g. SKU-0001)`)
		return "", false
	}
	return sku, true
}

func fieldProblem(w http.ResponseWriter, r *http.Request, field, msg string) {
	httpserver.WriteProblem(w, r, httpserver.Problem{Status: http.StatusBadRequest,
		Detail: fmt.Sprintf("%s %s", field, msg),
		Errors: []httpserver.FieldError{{Field: field, Message: msg}}})
}

// writeErr is the one mapping from the app's errors to HTTP answers.
func writeErr(w http.ResponseWriter, r *http.Request, sku string, err error) {
	switch {
	case errors.Is(err, stock.ErrNotFound):
		httpserver.WriteProblem(w, r, httpserver.Problem{Status: http.StatusNotFound,
			Detail: fmt.Sprintf("no stock is recorded for SKU %s", sku)})
	case errors.Is(err, stock.ErrBelowReserved):
		httpserver.WriteProblem(w, r, httpserver.Problem{Status: http.StatusConflict, Detail: err.Error(),
			Errors: []httpserver.FieldError{{Field: "on_hand", Message: "is below the quantity reserved for open orders"}}})
	case errors.Is(err, stock.ErrInvalid):
		httpserver.WriteProblem(w, r, httpserver.Problem{Status: http.StatusBadRequest, Detail: err.Error()})
	case pg.Transient(err):
		// The row stayed locked past INVENTORY_LOCK_TIMEOUT (reservations
		// hold it), a deadlock, a lost connection: worth another try.
		w.Header().Set("Retry-After", "1")
		httpserver.WriteProblem(w, r, httpserver.Problem{Status: http.StatusServiceUnavailable,
			Detail: fmt.Sprintf("the stock of SKU %s is busy or the database unreachable; try again", sku)})
	default:
		httpserver.WriteError(w, r, err)
	}
}
