// Package tracing carries one OpenTelemetry trace through an order's whole
// life: the HTTP request that placed it, the outbox row (the event's W3C
// traceparent), the Kafka header, each consumer's span, and the result
// events those consumers write, which carry it on.
//
// Tracing is on when OTEL_EXPORTER_OTLP_ENDPOINT or the per-signal
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set (spans go there over
// OTLP/HTTP, configured by the standard OTEL_* variables) and off
// otherwise: then no spans are recorded and events carry no traceparent.
// Tests inject their own provider with WithProvider.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.41.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/shopflow/shopflow/pkg/platform/internal/quiet"
)

// EndpointVar turns tracing on: spans go to its base URL plus /v1/traces.
const EndpointVar = "OTEL_EXPORTER_OTLP_ENDPOINT"

// TracesEndpointVar, the per-signal variable, turns tracing on too and
// takes precedence over EndpointVar: spans go to its URL as written (the
// exporter puts nothing after its path, "/" when it has none), as the
// OpenTelemetry specification says.
const TracesEndpointVar = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"

// Propagator is W3C trace context, the only format the events carry.
var Propagator = propagation.TraceContext{}

type providerKey struct{}

// WithProvider returns a context that makes Setup use tp (tests, or a
// process running several services that share one exporter).
func WithProvider(ctx context.Context, tp trace.TracerProvider) context.Context {
	return context.WithValue(ctx, providerKey{}, tp)
}

// Setup returns the tracer provider for service and a shutdown that
// flushes it: the one injected by WithProvider, else an OTLP/HTTP exporter
// when OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT is
// set, else a no-op provider.
//
// With the exporter, OpenTelemetry's errors (an export the collector did
// not take, every 5 s while it is away) go to log (nil: slog.Default())
// through ErrorHandler, instead of plain text lines on stderr among the
// JSON ones. The handler is process-wide (otel.SetErrorHandler): in a
// process running several services, the last one set up names them all.
func Setup(ctx context.Context, service string, log *slog.Logger) (trace.TracerProvider, func(context.Context) error, error) {
	nothing := func(context.Context) error { return nil }
	if tp, ok := ctx.Value(providerKey{}).(trace.TracerProvider); ok {
		return tp, nothing, nil
	}
	// The exporter trims the values too: blank is unset. It also reads
	// them itself, the per-signal one first: both are only checked here.
	traces := strings.TrimSpace(os.Getenv(TracesEndpointVar))
	generic := strings.TrimSpace(os.Getenv(EndpointVar))
	if traces == "" && generic == "" {
		return noop.NewTracerProvider(), nothing, nil
	}
	// config.Load has checked them already; this is for configurations
	// built in code, which leave the variables to the process's
	// environment.
	if err := CheckEndpoint(generic); err != nil {
		return nil, nil, fmt.Errorf("tracing: %s: %w", EndpointVar, err)
	}
	if err := CheckTracesEndpoint(traces); err != nil {
		return nil, nil, fmt.Errorf("tracing: %s: %w", TracesEndpointVar, err)
	}
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("tracing: exporter: %w", err)
	}
	res, err := resource.Merge(resource.Default(), resource.NewWithAttributes(semconv.SchemaURL, semconv.ServiceName(service)))
	if err != nil && !errors.Is(err, resource.ErrSchemaURLConflict) {
		return nil, nil, fmt.Errorf("tracing: resource: %w", err)
	}
	if log == nil {
		log = slog.Default()
	}
	if u, err := url.Parse(traces); traces != "" && err == nil && (u.Path == "" || u.Path == "/") {
		// Used as written (no /v1/traces added), so most likely the base
		// URL meant for OTEL_EXPORTER_OTLP_ENDPOINT: every export would
		// get a 404. Said, not refused: a proxy may take spans at "/".
		log.Warn("tracing: "+TracesEndpointVar+" has no path; spans go to \"/\" as written, where a collector takes them at /v1/traces",
			"endpoint", traces)
	}
	otel.SetErrorHandler(ErrorHandler(log))
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	return tp, tp.Shutdown, nil
}

// ErrorHandler returns an OpenTelemetry error handler that logs each error
// to log at Warn as "tracing error": the first of a kind at once, then at
// most one every 30 s with the number held back (errors are told apart by
// their text without digits), so a collector that is away for an hour
// costs some 120 lines, not 720.
func ErrorHandler(log *slog.Logger) otel.ErrorHandler {
	q := quiet.New(quiet.Interval)
	return otel.ErrorHandlerFunc(func(err error) {
		if err == nil {
			return
		}
		switch ok, held, since := q.Pass(err.Error()); {
		case !ok:
		case held > 0:
			log.Warn("tracing error", "err", err, "like_it_not_logged", held, "since", since.Round(time.Second).String())
		default:
			log.Warn("tracing error", "err", err)
		}
	})
}

// CheckEndpoint reports whether s, a value of OTEL_EXPORTER_OTLP_ENDPOINT,
// is one the OTLP/HTTP exporter sends to as written: an http or https URL
// with a host, optionally a port and a base path ("/v1/traces" is put
// after it), e.g. http://otel-collector:4318. Empty (or blank, which the
// exporter trims to empty) is fine: tracing off.
//
// The exporter itself never fails on a bad value: one url.Parse rejects
// ("::::", or host:port like 127.0.0.1:4318) it logs in plain text and
// replaces with https://localhost:4318; host:port with a name
// (collector:4318) parses as a scheme "collector" and no host, and every
// export fails with "no Host in request URL". It uses only the scheme, the
// host and the path, so a query, a fragment or user:password@ would be
// dropped without a word.
func CheckEndpoint(s string) error {
	return checkEndpoint(s, "like http://otel-collector:4318 (http or https, a host, optionally a port and a base path)")
}

// CheckTracesEndpoint is CheckEndpoint for a value of
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, which the exporter sends to as
// written, path included (nothing is put after it): e.g.
// http://otel-collector:4318/v1/traces.
func CheckTracesEndpoint(s string) error {
	return checkEndpoint(s, "like http://otel-collector:4318/v1/traces (http or https, a host, optionally a port, and the full path)")
}

func checkEndpoint(s, like string) error {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil
	}
	if strings.Contains(s, "@") {
		// Whether it parses or not, what comes before the @ may be a
		// password: not echoed.
		return errors.New("the exporter takes no user:password@ in the URL (and the value is not shown here); " +
			"send credentials in OTEL_EXPORTER_OTLP_HEADERS")
	}
	u, err := url.Parse(s)
	switch {
	case err != nil || u.Opaque != "" || u.Scheme == "":
		if _, port, hpErr := net.SplitHostPort(s); hpErr == nil && !strings.Contains(s, "/") {
			if _, err := strconv.Atoi(port); err != nil {
				// name:word reads like user:password: not echoed.
				return fmt.Errorf("is not a URL %s (the value is not shown here: it reads like user:password)", like)
			}
			return fmt.Errorf("%q has no scheme: the exporter would not send to it; write http://%s (or https://)", s, s)
		}
		return fmt.Errorf("%q is not a URL %s", s, like)
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("%q: scheme %q is not http or https; want a URL %s", s, u.Scheme, like)
	case u.Host == "" || u.Hostname() == "":
		return fmt.Errorf("%q has no host; want a URL %s", s, like)
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		// Not echoed: a query may carry a key.
		return fmt.Errorf("the exporter ignores a query or fragment (the value is not shown here); want a URL %s", like)
	}
	return nil
}

// TraceParent returns the W3C traceparent of the span in ctx, or "" when
// there is none (tracing off).
func TraceParent(ctx context.Context) string {
	carrier := propagation.MapCarrier{}
	Propagator.Inject(ctx, carrier)
	return carrier["traceparent"]
}

// FromTraceParent returns ctx carrying the remote span context of a W3C
// traceparent ("" or invalid: ctx unchanged).
func FromTraceParent(ctx context.Context, traceparent string) context.Context {
	if traceparent == "" {
		return ctx
	}
	return Propagator.Extract(ctx, propagation.MapCarrier{"traceparent": traceparent})
}
