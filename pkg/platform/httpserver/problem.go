package httpserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"mime"
	"net/http"
	"reflect"
	"strconv"
	"strings"

	"github.com/shopflow/shopflow/pkg/platform/pg"
)

// ProblemContentType is the media type of RFC 9457 problem details.
const ProblemContentType = "application/problem+json"

// Problem is an RFC 9457 problem detail: the body of every error answer.
// A *Problem is also an error, so code that decides the HTTP outcome can
// return one and let the handler WriteError it.
type Problem struct {
	// Type is a URI identifying the kind of problem; "about:blank" (the
	// default) means the status code says it all.
	Type string `json:"type"`
	// Title is a short summary of the kind; defaults to the status text.
	Title string `json:"title"`
	// Status is the HTTP status code; defaults to 500.
	Status int `json:"status"`
	// Detail explains this occurrence, for the client.
	Detail string `json:"detail,omitempty"`
	// Instance identifies this occurrence; WriteProblem defaults it to
	// the request path, escaped.
	Instance string `json:"instance,omitempty"`
	// Errors lists per-field problems of a rejected request body.
	Errors []FieldError `json:"errors,omitempty"`
	// Extensions are extra members, marshaled beside the standard ones
	// (which they cannot replace). WriteProblem adds "request_id".
	Extensions map[string]any `json:"-"`
}

// FieldError is one problem with one field of a request.
type FieldError struct {
	// Field is the JSON path of the field, e.g. "items.0.quantity".
	Field string `json:"field"`
	// Message says what is wrong with it.
	Message string `json:"message"`
}

// Error summarizes the problem, e.g. "400 Bad Request: unknown field".
func (p *Problem) Error() string {
	title := p.Title
	if title == "" {
		title = http.StatusText(p.Status)
	}
	if p.Detail == "" {
		return fmt.Sprintf("%d %s", p.Status, title)
	}
	return fmt.Sprintf("%d %s: %s", p.Status, title, p.Detail)
}

// MarshalJSON writes the standard members, then the extensions.
func (p Problem) MarshalJSON() ([]byte, error) {
	type standard Problem // drops this method
	b, err := json.Marshal(standard(p))
	if err != nil || len(p.Extensions) == 0 {
		return b, err
	}
	ext := make(map[string]any, len(p.Extensions))
	for k, v := range p.Extensions {
		switch k {
		case "type", "title", "status", "detail", "instance", "errors":
		default:
			ext[k] = v
		}
	}
	if len(ext) == 0 {
		return b, nil
	}
	e, err := json.Marshal(ext)
	if err != nil {
		return nil, err
	}
	// {standard...} + {ext...} → {standard...,ext...}
	out := append(b[:len(b)-1], ',')
	return append(out, e[1:]...), nil
}

// WriteProblem answers with p as application/problem+json, filling the
// defaults (status 500, title from the status, type about:blank, instance
// the request path) and the request_id extension.
func WriteProblem(w http.ResponseWriter, r *http.Request, p Problem) {
	if p.Status == 0 {
		p.Status = http.StatusInternalServerError
	}
	if p.Title == "" {
		p.Title = http.StatusText(p.Status)
	}
	if p.Type == "" {
		p.Type = "about:blank"
	}
	if r != nil {
		if p.Instance == "" {
			// A URI reference (RFC 9457): the path as sent, escapes
			// kept ("/orders/ /label" was no URI).
			p.Instance = r.URL.EscapedPath()
		}
		if id := RequestID(r.Context()); id != "" {
			ext := make(map[string]any, len(p.Extensions)+1)
			maps.Copy(ext, p.Extensions)
			ext["request_id"] = id
			p.Extensions = ext
		}
	}
	b, err := json.Marshal(p)
	if err != nil {
		// Only an unmarshalable extension gets here; answer without them.
		p.Extensions = nil
		b, _ = json.Marshal(p)
	}
	w.Header().Set("Content-Type", ProblemContentType)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(p.Status)
	_, _ = w.Write(append(b, '\n'))
}

// WriteError answers with err: a *Problem (anywhere in its chain) as is;
// the database unavailable or the request's deadline passed, where
// sending the request again is the answer, as 503 with Retry-After
// (Unavailable says when); anything else as a bare 500 (logged with the
// request id; its text never reaches the client).
func WriteError(w http.ResponseWriter, r *http.Request, err error) {
	var p *Problem
	if errors.As(err, &p) {
		WriteProblem(w, r, *p)
		return
	}
	ctx := context.Background()
	if r != nil {
		ctx = r.Context()
	}
	if detail, msg := unavailable(r, err); detail != "" {
		// The request was fine and can be sent again: 503, not a 500
		// that reads as a bug. The cause names hosts and users:
		// logged, not answered.
		Logger(ctx).Warn(msg, "err", err)
		w.Header().Set("Retry-After", strconv.Itoa(RetryAfterUnavailable))
		WriteProblem(w, r, Problem{Status: http.StatusServiceUnavailable, Detail: detail})
		return
	}
	level := slog.LevelError
	if r != nil && ClientGone(r) {
		level = slog.LevelInfo // the client went away; nothing is wrong here
	}
	Logger(ctx).Log(ctx, level, "request failed", "err", err)
	WriteProblem(w, r, Problem{Status: http.StatusInternalServerError,
		Detail: "internal error; quote the request id when reporting it"})
}

// Unavailable reports whether WriteError answers err, from serving r,
// with 503 and Retry-After, for handlers that answer in another form (an
// HTML page): the database is down or out of reach (pg.Down: refused
// before the work was done), or r may be sent again (its method is
// idempotent or its route RetrySafe) and its deadline
// (Config.RequestTimeout) passed or its connection to the database was
// lost mid-statement (pg.Unavailable). A request that may have been done
// and must not be sent again blindly gets a 500, as does a bug.
func Unavailable(r *http.Request, err error) bool {
	detail, _ := unavailable(r, err)
	return detail != ""
}

// sendAgain ends the detail of every 503 that says to send the request
// again.
const sendAgain = "send it again shortly (see Retry-After), with the same Idempotency-Key if this answer names one"

// unavailable is Unavailable's verdict: the 503's detail and the log
// message, or "" for another answer.
func unavailable(r *http.Request, err error) (detail, msg string) {
	ctx := context.Background()
	if r != nil {
		ctx = r.Context()
		if de := deadlinePassed(ctx); de != nil {
			if !retrySafe(r) {
				return "", ""
			}
			return fmt.Sprintf("the request did not finish within %s: the database is slow or unavailable; %s", de.Timeout, sendAgain),
				"request did not finish in time"
		}
		if se, ok := endedByServer(ctx).(*ShutdownError); ok {
			// As for the deadline: the work was stopped where it was, and
			// may have been done.
			if !retrySafe(r) {
				return "", ""
			}
			return "the service is shutting down and stopped the request before it finished; " + sendAgain,
				fmt.Sprintf("request ended by the shutdown after %s", se.After)
		}
	}
	if ctx.Err() != nil {
		return "", "" // the client went away
	}
	if pg.Down(err) {
		// The database is down or out of reach (/readyz says so too)
		// and the work was not done.
		return "the database is unavailable; " + sendAgain, "request failed: the database is unavailable"
	}
	if r != nil && pg.Unavailable(err) && retrySafe(r) {
		// The connection was lost mid-statement (a restart, a crash, a
		// network cut) or timed out: the work may have been done, which
		// a request safe to repeat can ignore.
		return "the connection to the database was lost; " + sendAgain, "request failed: the database connection was lost"
	}
	return "", ""
}

// RetryAfterUnavailable is the Retry-After, in seconds, of a 503 for a
// database that is unavailable: about how often /readyz is probed.
const RetryAfterUnavailable = 5

// WriteJSON answers with v as JSON. A value that cannot be marshaled is a
// bug: it is logged and answered as a bare 500.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		slog.Default().Error("httpserver: marshal response", "err", err, "type", fmt.Sprintf("%T", v))
		WriteProblem(w, nil, Problem{Status: http.StatusInternalServerError})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// UnknownFieldsError is DecodeJSON's refusal of a body whose only fault is
// fields dst does not have (the Problem names them all). dst is decoded
// all the same, so a caller can check the rest and answer once with every
// bad field; WriteError writes the Problem as it is.
type UnknownFieldsError struct{ *Problem }

// Unwrap returns the Problem, for errors.As.
func (e *UnknownFieldsError) Unwrap() error { return e.Problem }

// unknownFieldPrefix starts encoding/json's error for a field dst lacks.
const unknownFieldPrefix = "json: unknown field "

// DecodeJSON reads the request body, which must be one JSON value of
// Content-Type application/json, into dst, rejecting unknown fields. A
// client mistake comes back as a *Problem to WriteProblem (or WriteError):
// 415 for another content type or a charset other than UTF-8 (with Accept
// set on w) or a compressed body
// (Accept-Encoding: identity), 413 for a body over the server's limit, 400
// for an empty body, malformed JSON (with line, column and offset), text
// that is not Unicode, a wrongly typed, unknown or repeated field (named
// with its path in Errors) or data after the value. Unknown fields alone
// come as an *UnknownFieldsError, with dst decoded. Anything else (dst not a pointer) is a plain
// error: a bug, for a 500.
func DecodeJSON(w http.ResponseWriter, r *http.Request, dst any) error {
	ct := r.Header.Get("Content-Type")
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/json" {
		w.Header().Set("Accept", "application/json")
		return &Problem{Status: http.StatusUnsupportedMediaType,
			Detail: fmt.Sprintf("Content-Type must be application/json, not %q", ct)}
	}
	if cs, ok := params["charset"]; ok && !utf8Charset(cs) {
		// JSON is UTF-8 (RFC 8259 8.1); a Latin-1 body read as UTF-8
		// would be refused, or worse, stored garbled.
		w.Header().Set("Accept", "application/json")
		return &Problem{Status: http.StatusUnsupportedMediaType,
			Detail: fmt.Sprintf("charset %q is not supported: JSON is UTF-8", cs)}
	}
	if ce := r.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		// Read as it is, a gzip body was "malformed JSON at offset 0".
		w.Header().Set("Accept-Encoding", "identity") // RFC 9110 12.5.3: none is supported
		return &Problem{Status: http.StatusUnsupportedMediaType,
			Detail: fmt.Sprintf("Content-Encoding %q is not supported: send the body uncompressed", ce)}
	}
	if r.Body == nil {
		return badRequest("request body is empty")
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return &Problem{Status: http.StatusRequestEntityTooLarge,
				Detail: fmt.Sprintf("request body exceeds %d bytes", tooBig.Limit)}
		}
		return badRequest("could not read the request body")
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return badRequest("request body is empty")
	}
	if bytes.HasPrefix(body, []byte("\uFEFF")) {
		// RFC 8259 8.1: JSON text must not start with one; the decoder
		// would name its first byte, 'ï'.
		return badRequest("request body starts with a byte-order mark (U+FEFF): send the JSON without it")
	}

	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var unknown *UnknownFieldsError
	if err := dec.Decode(dst); err != nil {
		p := decodeProblem(err, body, dst)
		if !strings.HasPrefix(err.Error(), unknownFieldPrefix) {
			return p
		}
		// Only unknown fields so far: the rest is decoded all the same,
		// so a caller can check it too and answer once with every bad
		// field, not the unknown ones first and the others next time.
		unknown = &UnknownFieldsError{Problem: p.(*Problem)}
		dec = json.NewDecoder(bytes.NewReader(body))
		if err := dec.Decode(dst); err != nil {
			return decodeProblem(err, body, dst)
		}
	}
	if rest := bytes.TrimLeft(body[dec.InputOffset():], " \t\r\n"); len(rest) > 0 {
		off := int64(len(body) - len(rest))
		return badRequest(fmt.Sprintf("request body must hold a single JSON value; more follows at %s", position(body, off)))
	}
	if bytes.Equal(bytes.TrimSpace(body), []byte("null")) && wantsObject(dst) {
		// encoding/json leaves a struct alone for null: it would pass as {}.
		return badRequest("request body must be an object, not null")
	}
	if off, what := badText(body); off >= 0 {
		p := badRequest(fmt.Sprintf("request body holds text that is not Unicode at %s: %s", position(body, int64(off)), what))
		if _, field := jsonShape(body, int64(off)+1, false); field != "" {
			p.Errors = []FieldError{{Field: field, Message: "is not valid Unicode (" + what + ")"}}
		}
		return p
	}
	if dup, _ := jsonShape(body, 0, wantsStruct(dst)); dup != "" {
		return &Problem{Status: http.StatusBadRequest,
			Detail: fmt.Sprintf("field %q is given more than once", dup),
			Errors: []FieldError{{Field: dup, Message: "is given more than once"}}}
	}
	if unknown != nil {
		return unknown
	}
	return nil
}

// utf8Charset reports whether a charset parameter names UTF-8 or its
// subset US-ASCII, by a name clients send for them.
func utf8Charset(cs string) bool {
	switch strings.ToLower(cs) {
	case "utf-8", "utf8", "us-ascii", "ascii":
		return true
	}
	return false
}

// wantsObject reports whether dst points to a struct or a map.
func wantsObject(dst any) bool {
	k := targetKind(dst)
	return k == reflect.Struct || k == reflect.Map
}

// wantsStruct reports whether dst points to a struct, whose fields
// encoding/json matches to keys without regard to case: "sku" and "SKU"
// are the same field there.
func wantsStruct(dst any) bool { return targetKind(dst) == reflect.Struct }

func targetKind(dst any) reflect.Kind {
	t := reflect.TypeOf(dst)
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil {
		return reflect.Invalid
	}
	return t.Kind()
}

func badRequest(detail string) *Problem {
	return &Problem{Status: http.StatusBadRequest, Detail: detail}
}

// decodeProblem maps encoding/json's errors to what the client needs to
// fix its request.
func decodeProblem(err error, body []byte, dst any) error {
	var (
		syntax    *json.SyntaxError
		typ       *json.UnmarshalTypeError
		invalid   *json.InvalidUnmarshalError
		unknownFx = unknownFieldPrefix
	)
	switch {
	case errors.As(err, &syntax):
		// Offset counts the offending byte.
		return badRequest(fmt.Sprintf("malformed JSON at %s: %s", position(body, syntax.Offset-1), syntax.Error()))
	case errors.Is(err, io.ErrUnexpectedEOF):
		return badRequest(fmt.Sprintf("malformed JSON: the body ends early, at %s", position(body, int64(len(body)))))
	case errors.As(err, &typ):
		field := typ.Field
		if _, at := jsonShape(body, typ.Offset, false); at != "" {
			field = at // with the array indices encoding/json leaves out
		}
		if field == "" {
			return badRequest(fmt.Sprintf("request body must be %s, not %s", jsonKind(typ), typ.Value))
		}
		msg := fmt.Sprintf("must be %s, not %s", jsonKind(typ), typ.Value)
		return &Problem{Status: http.StatusBadRequest,
			Detail: fmt.Sprintf("field %q %s", field, msg),
			Errors: []FieldError{{Field: field, Message: msg}}}
	case strings.HasPrefix(err.Error(), unknownFx):
		field := strings.TrimPrefix(err.Error(), unknownFx)
		if uq, uerr := strconv.Unquote(field); uerr == nil {
			field = uq
		}
		// encoding/json names the first without its path; say where it
		// is, and every other one too.
		fields := []string{field}
		if t := reflect.TypeOf(dst); t != nil {
			if all := unknownFields(body, t); len(all) > 0 {
				fields = all
			}
		}
		p := &Problem{Status: http.StatusBadRequest}
		quoted := make([]string, len(fields))
		for i, f := range fields {
			quoted[i] = strconv.Quote(f)
			p.Errors = append(p.Errors, FieldError{Field: f, Message: "unknown field"})
		}
		p.Detail = "unknown field " + quoted[0]
		if len(fields) > 1 {
			p.Detail = "unknown fields " + strings.Join(quoted, ", ")
		}
		return p
	case errors.As(err, &invalid):
		return fmt.Errorf("httpserver: decode: %w", err)
	}
	// A field type's own UnmarshalJSON or UnmarshalText refused the value.
	return badRequest("invalid request body: " + strings.TrimPrefix(err.Error(), "json: "))
}

// jsonKind names the JSON a Go type expects.
func jsonKind(e *json.UnmarshalTypeError) string {
	t := e.Type
	if t == nil {
		return "another type"
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a non-negative integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Struct, reflect.Map:
		return "an object"
	}
	return "a " + t.String()
}

// position renders the 0-based byte offset of a byte in body as "line L,
// column C (offset N)", lines and columns counted from 1.
func position(body []byte, offset int64) string {
	if offset < 0 {
		offset = 0
	}
	if offset > int64(len(body)) {
		offset = int64(len(body))
	}
	before := body[:offset]
	line := bytes.Count(before, []byte{'\n'}) + 1
	col := int(offset) - bytes.LastIndexByte(before, '\n') // -1 without a newline
	return fmt.Sprintf("line %d, column %d (offset %d)", line, col, offset)
}
