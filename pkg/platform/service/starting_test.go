package service_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/shopflow/shopflow/pkg/platform/config"
	"github.com/shopflow/shopflow/pkg/platform/httpserver"
	"github.com/shopflow/shopflow/pkg/platform/service"
	"github.com/shopflow/shopflow/pkg/platform/testenv"
)

// answer is one HTTP answer, or the error of a request that got none.
type answer struct {
	status int
	header http.Header
	body   string
	err    error
}

// ask sends method path to base with a client that gives up after a few
// seconds: a port bound but not served leaves a request hanging, which is
// what these tests look for.
func ask(method, base, path string) answer {
	req, err := http.NewRequest(method, base+path, strings.NewReader(`{}`))
	if err != nil {
		return answer{err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return answer{err: err}
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return answer{status: res.StatusCode, header: res.Header, body: string(b), err: err}
}

func (a answer) String() string {
	if a.err != nil {
		return "no answer: " + a.err.Error()
	}
	return http.StatusText(a.status) + " " + a.body
}

// serveStarting binds a loopback port, runs the service on it in the
// background and returns the port's base URL, the channel Run's result
// comes on, and the channel OnStarted reports on.
func serveStarting(t *testing.T, ctx context.Context, common config.Common) (base string, done <-chan error, up <-chan string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	spec, setup := echoSpec()
	d := make(chan error, 1)
	u := make(chan string, 1)
	go func() {
		sctx := service.WithListener(service.OnStarted(ctx, func(a string) { u <- a }), ln)
		d <- service.Run(sctx, spec, common, slog.New(slog.DiscardHandler), setup)
	}()
	return "http://" + ln.Addr().String(), d, u
}

// TestRunAnswersWhileStarting: a service waiting for PostgreSQL or Kafka
// at start answers on its port: /healthz 200 (alive), /readyz 503 saying
// what it waits for and why (without the address), /metrics with the
// stage, and its own routes 503 with Retry-After, never a 404. A stop
// then closes the port. Before, the port was bound (by shop dev and the
// tests) or not yet open (HTTP_ADDR) until the service had started:
// probes hung or were refused, and a liveness probe killed a service that
// only waited for its database.
func TestRunAnswersWhileStarting(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, stage, doing string
		change             func(*config.Common, string)
	}{
		{"for PostgreSQL", "postgres", "waiting for PostgreSQL", func(c *config.Common, closed string) {
			c.DatabaseURL = "postgres://postgres@" + closed + "/none?sslmode=disable&connect_timeout=1"
		}},
		{"for Kafka", "kafka", "waiting for Kafka to create the topics", func(c *config.Common, closed string) {
			c.KafkaBrokers = []string{closed}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			common := testenv.Common(t)
			closed := testenv.FreeAddr(t)
			tc.change(&common, closed)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			base, done, up := serveStarting(t, ctx, common)

			var ready answer
			defer func() {
				if t.Failed() {
					t.Logf("last /readyz: %v", ready)
				}
			}()
			testenv.Eventually(t, 30*time.Second, "/readyz never said the service waits, and why", func() bool {
				ready = ask(http.MethodGet, base, "/readyz")
				return ready.status == http.StatusServiceUnavailable && strings.Contains(ready.body, "connection refused")
			})
			t.Logf("/readyz while starting: %s", ready.body)
			var body struct {
				Title     string `json:"title"`
				Detail    string `json:"detail"`
				Stage     string `json:"stage"`
				LastError string `json:"last_error"`
			}
			if err := json.Unmarshal([]byte(ready.body), &body); err != nil {
				t.Fatalf("/readyz: %v: %s", err, ready.body)
			}
			if ct := ready.header.Get("Content-Type"); ct != httpserver.ProblemContentType {
				t.Errorf("/readyz Content-Type = %q, want %s", ct, httpserver.ProblemContentType)
			}
			want := "starting: " + tc.doing + " (last error: connection refused)"
			if body.Title != "Not Ready" || body.Detail != want || body.Stage != tc.stage || body.LastError != "connection refused" {
				t.Errorf("/readyz = %s\nwant title Not Ready, detail %q, stage %q, last_error \"connection refused\"", ready.body, want, tc.stage)
			}
			_, port, _ := net.SplitHostPort(closed)
			if strings.Contains(ready.body, port) {
				t.Errorf("/readyz names the address the service waits for (the log's business): %s", ready.body)
			}

			if a := ask(http.MethodGet, base, "/healthz"); a.status != http.StatusOK {
				t.Errorf("GET /healthz while starting: %v, want 200", a)
			}
			// Its own routes: GET /v1/seen is one; POST /v1/orders is not
			// (its 404 comes once the routes are known).
			for _, r := range [][2]string{{http.MethodGet, "/v1/seen"}, {http.MethodPost, "/v1/orders"}} {
				a := ask(r[0], base, r[1])
				if a.status != http.StatusServiceUnavailable || a.header.Get("Content-Type") != httpserver.ProblemContentType ||
					a.header.Get("Retry-After") == "" || !strings.Contains(a.body, tc.doing) {
					t.Errorf("%s %s while starting: %v (Retry-After %q), want 503 problem+json with Retry-After saying %q",
						r[0], r[1], a, a.header.Get("Retry-After"), tc.doing)
				}
			}
			metrics := ask(http.MethodGet, base, "/metrics")
			for _, w := range []string{
				`shop_service_starting{service="echo",stage="` + tc.stage + `"} 1`,
				`shop_service_starting{service="echo",stage="setup"} 0`,
				"go_goroutines ",
			} {
				if !strings.Contains(metrics.body, w) {
					t.Errorf("GET /metrics while starting lacks %s: %v", w, metrics)
				}
			}

			cancel() // SIGTERM
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run = %v, want nil: a stop while starting is a graceful stop", err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("Run did not return within 30 s of the stop")
			}
			select {
			case <-up:
				t.Error("OnStarted called for a service that never started")
			default:
			}
			if a := ask(http.MethodGet, base, "/healthz"); a.err == nil {
				t.Errorf("the port still answers after Run returned: %v", a)
			}
		})
	}
}

// TestRunGoesReadyOnceTheDatabaseAnswers: a service that starts while its
// database refuses connections says so on /readyz, then starts once the
// database answers: OnStarted, /readyz 200, its routes served, the
// start-up gauge at 0.
func TestRunGoesReadyOnceTheDatabaseAnswers(t *testing.T) {
	t.Parallel()
	common := testenv.Common(t)
	u, err := url.Parse(common.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := testenv.StartProxy(t, u.Host)
	proxy.Refuse()
	u.Host = proxy.Addr().String()
	common.DatabaseURL = u.String()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	base, done, up := serveStarting(t, ctx, common)

	var ready answer
	defer func() {
		if t.Failed() {
			t.Logf("last /readyz: %v", ready)
		}
	}()
	testenv.Eventually(t, 20*time.Second, "/readyz never said the service waits for PostgreSQL", func() bool {
		ready = ask(http.MethodGet, base, "/readyz")
		return ready.status == http.StatusServiceUnavailable && strings.Contains(ready.body, `"last_error"`)
	})
	t.Logf("/readyz while starting: %s", ready.body)
	if !strings.Contains(ready.body, "starting: waiting for PostgreSQL (last error: ") {
		t.Errorf("/readyz = %v, want it to say it waits for PostgreSQL", ready)
	}
	proxy.Restore()

	var addr string
	select {
	case addr = <-up:
	case err := <-done:
		t.Fatalf("Run returned before starting: %v", err)
	case <-time.After(time.Minute):
		t.Fatalf("not started within a minute of the database answering; /readyz: %v", ask(http.MethodGet, base, "/readyz"))
	}
	if "http://"+addr != base {
		t.Errorf("OnStarted's address %s, want the listener's %s", addr, base)
	}
	testenv.Eventually(t, 30*time.Second, "/readyz never 200 once started", func() bool {
		ready = ask(http.MethodGet, base, "/readyz")
		return ready.status == http.StatusOK
	})
	if a := ask(http.MethodGet, base, "/v1/seen"); a.status != http.StatusOK {
		t.Errorf("GET /v1/seen once started: %v, want 200", a)
	}
	if a := ask(http.MethodPost, base, "/v1/orders"); a.status != http.StatusNotFound {
		t.Errorf("POST /v1/orders once started: %v, want 404: the service has no such route", a)
	}
	if m := ask(http.MethodGet, base, "/metrics"); !strings.Contains(m.body, `shop_service_starting{service="echo",stage="postgres"} 0`) {
		t.Errorf("GET /metrics once started: the postgres stage is not at 0:\n%s", m.body)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return within 30 s of the stop")
	}
}
