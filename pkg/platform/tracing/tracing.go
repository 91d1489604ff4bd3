// Package tracing carries one OpenTelemetry trace through an order's whole
// life: the HTTP request that placed it, the outbox row (the event's W3C
// traceparent), the Kafka header, each consumer's span, and the result
// events those consumers write, which carry it on.
//
// Tracing is on when OTEL_EXPORTER_OTLP_ENDPOINT is set (spans go there
// over OTLP/HTTP, configured by the standard OTEL_* variables) and off
// otherwise: then no spans are recorded and events carry no traceparent.
// Tests inject their own provider with WithProvider.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"os"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.41.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// EndpointVar turns tracing on.
const EndpointVar = "OTEL_EXPORTER_OTLP_ENDPOINT"

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
// when OTEL_EXPORTER_OTLP_ENDPOINT is set, else a no-op provider.
func Setup(ctx context.Context, service string) (trace.TracerProvider, func(context.Context) error, error) {
	nothing := func(context.Context) error { return nil }
	if tp, ok := ctx.Value(providerKey{}).(trace.TracerProvider); ok {
		return tp, nothing, nil
	}
	if os.Getenv(EndpointVar) == "" {
		return noop.NewTracerProvider(), nothing, nil
	}
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("tracing: %s: %w", EndpointVar, err)
	}
	res, err := resource.Merge(resource.Default(), resource.NewWithAttributes(semconv.SchemaURL, semconv.ServiceName(service)))
	if err != nil && !errors.Is(err, resource.ErrSchemaURLConflict) {
		return nil, nil, fmt.Errorf("tracing: resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	return tp, tp.Shutdown, nil
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
