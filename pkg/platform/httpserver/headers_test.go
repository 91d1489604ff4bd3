package httpserver

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestHeaderSizeLimit: a request whose headers exceed MaxHeaderBytes (64
// KiB) is answered 431 by net/http before any handler; one within it is
// served. Go's default let each connection hold 1 MiB of headers.
func TestHeaderSizeLimit(t *testing.T) {
	t.Parallel()
	s := New(Config{Addr: "127.0.0.1:0", ShutdownTimeout: 5 * time.Second}, nil, nil, nil, testRoutes)
	cancel, done := runServer(t, s)
	defer cancel()
	for _, c := range []struct {
		size int
		want int
	}{
		{32 << 10, http.StatusOK},
		{100 << 10, http.StatusRequestHeaderFieldsTooLarge},
	} {
		req, _ := http.NewRequest("GET", "http://"+s.Addr()+"/healthz", nil)
		req.Header.Set("X-Padding", strings.Repeat("a", c.size))
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%d KiB of headers: %v", c.size>>10, err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != c.want {
			t.Errorf("%d KiB of headers = %d %q; want %d", c.size>>10, res.StatusCode, body, c.want)
		}
		if c.want == 431 {
			t.Logf("what the client sees: %d, Content-Type %q, %q", res.StatusCode, res.Header.Get("Content-Type"), body)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v", err)
	}
}
