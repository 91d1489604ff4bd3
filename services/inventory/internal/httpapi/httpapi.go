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
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/shopflow/shopflow/pkg/platform/httpserver"
	"github.com/shopflow/shopflow/pkg/platform/pg"
	"github.com/shopflow/shopflow/services/inventory/internal/stock"
)

// Stocker is what the API needs from the app layer.
type Stocker interface {
	Stock(ctx context.Context, sku string) (stock.Level, error)
	SetOnHand(ctx context.Context, sku string, n int64, pre stock.Precondition) (l stock.Level, created bool, err error)
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
	w.Header().Set("ETag", etag(l))
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
	var pre stock.Precondition
	for _, h := range []struct {
		name string
		set  **stock.Versions
		weak bool
	}{{"If-Match", &pre.IfMatch, false}, {"If-None-Match", &pre.IfNoneMatch, true}} {
		vals := r.Header.Values(h.name)
		if len(vals) == 0 {
			continue
		}
		v, err := parseETags(strings.Join(vals, ","), h.weak)
		if err != nil {
			httpserver.WriteProblem(w, r, httpserver.Problem{Status: http.StatusBadRequest,
				Detail: fmt.Sprintf("header %s %v", h.name, err), Errors: []httpserver.FieldError{{Field: h.name, Message: err.Error()}}})
			return
		}
		*h.set = v
	}
	l, created, err := a.svc.SetOnHand(r.Context(), sku, *req.OnHand, pre)
	if err != nil {
		writeErr(w, r, sku, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated // RFC 9110 9.3.4: a PUT that creates says so
	}
	// No ETag: RFC 9110 9.3.4 forbids a validator in a successful PUT's
	// answer unless the request's body was stored as sent (it is not:
	// the level is {"on_hand": n} plus what the service keeps). A GET
	// gives it.
	httpserver.WriteJSON(w, status, view(l))
}

// etag is the entity-tag of a stock level: its version, which changes
// with every change to the level. PUT takes it in If-Match, so an admin
// who read the level can set it only if no order reserved, released or
// sold stock (and no other admin set it) since: on hand is an absolute
// figure, and setting it from a stale read would undo those changes.
func etag(l stock.Level) string { return `"` + strconv.FormatUint(uint64(l.Version), 10) + `"` }

// parseETags reads an If-Match or If-None-Match value (RFC 9110 13.1.1,
// 13.1.2): "*" or a comma-separated list of entity-tags. Tags this API
// cannot have issued are kept out of the list (they match nothing); weak
// tags count only under weak comparison (If-None-Match), as RFC 9110
// 8.8.3.2 says.
func parseETags(h string, weak bool) (*stock.Versions, error) {
	if strings.TrimSpace(h) == "*" {
		return &stock.Versions{Any: true}, nil
	}
	v := &stock.Versions{}
	tags := 0
	for rest := h; ; {
		rest = strings.TrimLeft(rest, " \t,")
		if rest == "" {
			break
		}
		isWeak := strings.HasPrefix(rest, "W/")
		if isWeak {
			rest = rest[2:]
		}
		if !strings.HasPrefix(rest, `"`) {
			return nil, errors.New(`is not "*" or a list of entity-tags (e.g. "42")`)
		}
		end := strings.IndexByte(rest[1:], '"')
		if end < 0 {
			return nil, errors.New("has an entity-tag without its closing quote")
		}
		tag := rest[1 : 1+end]
		rest = strings.TrimLeft(rest[2+end:], " \t")
		if rest != "" && rest[0] != ',' {
			return nil, errors.New("has entity-tags not separated by commas")
		}
		tags++
		// Entity-tags compare character by character: "041" is not "41".
		if n, err := strconv.ParseUint(tag, 10, 32); err == nil && strconv.FormatUint(n, 10) == tag && (weak || !isWeak) {
			v.List = append(v.List, uint32(n))
		}
	}
	if tags == 0 {
		return nil, errors.New("is empty")
	}
	return v, nil
}

func skuParam(w http.ResponseWriter, r *http.Request) (string, bool) {
	sku := httpserver.PathParam(r, "sku")
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
	var changed *stock.PreconditionError
	switch {
	case errors.As(err, &changed):
		if changed.Found {
			w.Header().Set("ETag", etag(changed.Current))
		}
		httpserver.WriteProblem(w, r, httpserver.Problem{Status: http.StatusPreconditionFailed,
			Title: "Precondition Failed", Detail: err.Error() + "; nothing was changed"})
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
