package main

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
)

func TestRun(t *testing.T) {
	var ready atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			http.NotFound(w, r)
			return
		}
		if !ready.Load() {
			http.Error(w, `{"kafka":"down"}`, http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	port := u.Port()
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL + "/readyz"
	closed.Close()

	cases := []struct {
		name     string
		args     []string
		httpAddr string
		notReady bool
		want     int
		stderr   string
	}{
		{name: "URL ready", args: []string{srv.URL + "/readyz"}, want: 0},
		{name: "URL not ready", args: []string{srv.URL + "/readyz"}, notReady: true, want: 1, stderr: "503"},
		{name: "HTTP_ADDR all interfaces", httpAddr: ":" + port, want: 0},
		{name: "HTTP_ADDR with host", httpAddr: "0.0.0.0:" + port, want: 0},
		{name: "HTTP_ADDR not ready", httpAddr: ":" + port, notReady: true, want: 1, stderr: "kafka"},
		{name: "wrong path", args: []string{srv.URL + "/nope"}, want: 1, stderr: "404"},
		{name: "nobody listening", args: []string{closedURL}, want: 1, stderr: "refused"},
		{name: "no HTTP_ADDR", want: 2, stderr: "HTTP_ADDR is not set"},
		{name: "HTTP_ADDR port 0", httpAddr: "127.0.0.1:0", want: 2, stderr: "no fixed port"},
		{name: "not a URL", args: []string{"127.0.0.1:8080/readyz"}, want: 2, stderr: "not an http(s) URL"},
		{name: "two URLs", args: []string{srv.URL, srv.URL}, want: 2, stderr: "usage"},
		{name: "bad timeout", args: []string{"-timeout", "0s", srv.URL}, want: 2, stderr: "usage"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ready.Store(!c.notReady)
			var stderr strings.Builder
			env := func(k string) string {
				if k == "HTTP_ADDR" {
					return c.httpAddr
				}
				return ""
			}
			if got := run(c.args, env, &stderr); got != c.want {
				t.Fatalf("exit %d, want %d; stderr: %s", got, c.want, stderr.String())
			}
			if !strings.Contains(stderr.String(), c.stderr) {
				t.Errorf("stderr %q does not mention %q", stderr.String(), c.stderr)
			}
		})
	}
}
