package tracing_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/shopflow/shopflow/pkg/platform/tracing"
)

// CheckEndpoint accepts what the OTLP/HTTP exporter sends to as written
// and refuses what it would replace, mangle or partly drop.
func TestCheckEndpoint(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"", "  ", "http://otel-collector:4318", "https://otel.example.com", "HTTP://127.0.0.1:4318",
		"http://[::1]:4318/base/", " http://collector:4318 "} {
		if err := tracing.CheckEndpoint(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{"::::", `"::::" is not a URL like http://otel-collector:4318`},
		{"127.0.0.1:4318", `"127.0.0.1:4318" has no scheme: the exporter would not send to it; write http://127.0.0.1:4318 (or https://)`},
		{"collector:4318", `"collector:4318" has no scheme`},
		{"collector", `"collector" is not a URL`},
		{"grpc://collector:4317", `scheme "grpc" is not http or https`},
		{"unix:///run/otel.sock", `scheme "unix" is not http or https`},
		{"http:///v1", `has no host`},
		{"http://collector:4318/?tenant=a", "ignores a query or fragment"},
		{"http://user:s3cret@collector:4318", "OTEL_EXPORTER_OTLP_HEADERS"},
		{"user:s3cret@collector:4318", "OTEL_EXPORTER_OTLP_HEADERS"}, // no URL: it was echoed whole
		{"http://user:s3 cret@collector:4318", "OTEL_EXPORTER_OTLP_HEADERS"},
	} {
		err := tracing.CheckEndpoint(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err = %v, want one containing %q", tc.in, err, tc.want)
		}
		if err != nil && (strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "tenant=a")) {
			t.Errorf("%q: the error shows the password: %v", tc.in, err)
		}
	}
}

// The per-signal variable is checked with the same rules, and its message
// asks for the full path; what may be a secret is never shown.
func TestCheckTracesEndpoint(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"", "http://otel-collector:4318/v1/traces", "https://otel.example.com"} {
		if err := tracing.CheckTracesEndpoint(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{"::::", `"::::" is not a URL like http://otel-collector:4318/v1/traces (http or https, a host, optionally a port, and the full path)`},
		{"127.0.0.1:4318", `"127.0.0.1:4318" has no scheme`},
		{"http://collector:4318/v1/traces?tenant=a", "ignores a query or fragment"},
		{"http://user:s3cret@collector:4318/v1/traces", "OTEL_EXPORTER_OTLP_HEADERS"},
	} {
		err := tracing.CheckTracesEndpoint(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err = %v, want one containing %q", tc.in, err, tc.want)
		}
		if err != nil && (strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "tenant=a")) {
			t.Errorf("%q: the error shows the secret: %v", tc.in, err)
		}
	}
}

// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT alone turns tracing on (it stayed
// off: only the generic variable was looked at), and a bad value of it
// stops Setup, naming it.
func TestSetupHonoursTheTracesEndpoint(t *testing.T) {
	t.Setenv(tracing.EndpointVar, "")
	t.Setenv(tracing.TracesEndpointVar, "http://127.0.0.1:4318/v1/traces")
	t.Cleanup(func() { otel.SetErrorHandler(otel.ErrorHandlerFunc(func(error) {})) })
	tp, shutdown, err := tracing.Setup(context.Background(), "test", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer shutdown(context.Background())
	if _, off := tp.(noop.TracerProvider); off {
		t.Errorf("%s alone: tracing is off", tracing.TracesEndpointVar)
	}
	// A base URL there (the generic variable's form) is said at start:
	// every export would go to "/".
	t.Setenv(tracing.TracesEndpointVar, "http://127.0.0.1:4318")
	var logs strings.Builder
	_, shutdown2, err := tracing.Setup(context.Background(), "test", slog.New(slog.NewJSONHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer shutdown2(context.Background())
	if !strings.Contains(logs.String(), `has no path`) || !strings.Contains(logs.String(), `"level":"WARN"`) {
		t.Errorf("Setup with %s without a path logged %q, want a warning", tracing.TracesEndpointVar, logs.String())
	}
	t.Setenv(tracing.TracesEndpointVar, "http://user:s3cret@collector:4318/v1/traces")
	_, _, err = tracing.Setup(context.Background(), "test", nil)
	if err == nil || !strings.Contains(err.Error(), tracing.TracesEndpointVar) || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("Setup with a password in %s: err = %v, want one naming it and not showing the password", tracing.TracesEndpointVar, err)
	}
}

// A process whose configuration was built in code still does not start
// tracing to an endpoint the exporter cannot use.
func TestSetupRefusesABadEndpoint(t *testing.T) {
	t.Setenv(tracing.EndpointVar, "::::")
	_, _, err := tracing.Setup(context.Background(), "test", nil)
	if err == nil || !strings.Contains(err.Error(), tracing.EndpointVar) {
		t.Fatalf("Setup: err = %v, want one naming %s", err, tracing.EndpointVar)
	}
}

// A collector that is away: the exporter's errors are JSON log lines at
// Warn on the service's logger, not OpenTelemetry's default plain text
// lines on stderr, and a repeat within 30 s is held back.
func TestExportErrorsAreLoggedAsWarnings(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nobody listens: connection refused
	t.Setenv(tracing.EndpointVar, "http://"+addr)
	t.Setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "200") // ms: no minute of retries
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "20")     // ms
	var (
		mu   sync.Mutex
		logs bytes.Buffer
	)
	log := slog.New(slog.NewJSONHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return logs.Write(p)
	}), nil)).With("service", "test")
	tp, shutdown, err := tracing.Setup(context.Background(), "test", log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { otel.SetErrorHandler(otel.ErrorHandlerFunc(func(error) {})) })
	// The batcher exports every OTEL_BSP_SCHEDULE_DELAY (5 s by default)
	// and hands a failure to OpenTelemetry's error handler.
	logged := func() string { mu.Lock(); defer mu.Unlock(); return logs.String() }
	for i := range 3 {
		_, span := tp.Tracer("t").Start(context.Background(), "s")
		span.End()
		deadline := time.Now().Add(5 * time.Second)
		for logged() == "" && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if i == 0 && logged() == "" {
			t.Fatal("the failed export was not logged")
		}
		time.Sleep(300 * time.Millisecond) // another export, failing again
	}
	_ = shutdown(context.Background())
	out := logged()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 1 {
		t.Fatalf("%d lines logged, want 1 (the repeats held back):\n%s", len(lines), out)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &m); err != nil {
		t.Fatalf("%q: %v", lines[0], err)
	}
	if m["level"] != "WARN" || m["msg"] != "tracing error" || m["service"] != "test" ||
		!strings.Contains(fmt.Sprint(m["err"]), "connection refused") {
		t.Errorf("logged %s, want a WARN tracing error for service test saying connection refused", lines[0])
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
