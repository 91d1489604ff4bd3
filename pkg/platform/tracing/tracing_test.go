package tracing_test

import (
	"context"
	"strings"
	"testing"

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

// A process whose configuration was built in code still does not start
// tracing to an endpoint the exporter cannot use.
func TestSetupRefusesABadEndpoint(t *testing.T) {
	t.Setenv(tracing.EndpointVar, "::::")
	_, _, err := tracing.Setup(context.Background(), "test")
	if err == nil || !strings.Contains(err.Error(), tracing.EndpointVar) {
		t.Fatalf("Setup: err = %v, want one naming %s", err, tracing.EndpointVar)
	}
}
