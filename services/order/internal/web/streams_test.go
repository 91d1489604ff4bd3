package web_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// streamFrom opens order id's event stream from the local address ip (a
// client of its own: 127.0.0.x are all this machine) and, when it is
// answered 200, reads it until the test ends.
func (s *shop) streamFrom(ctx context.Context, ip, id string) *http.Response {
	s.t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	client := &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
	req, _ := http.NewRequestWithContext(ctx, "GET", s.url+"/orders/"+id+"/events", nil)
	res, err := client.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	if res.StatusCode == http.StatusOK {
		s.t.Cleanup(func() { res.Body.Close() })
		go io.Copy(io.Discard, res.Body) //nolint:errcheck // read until the stream ends
	}
	return res
}

// TestEventStreamsAreLimited: the service keeps at most
// ORDER_MAX_STREAMS event streams open, and ORDER_MAX_STREAMS_PER_CLIENT
// from one client address; a stream more is refused at once (503, or
// 429 for a client's), with Retry-After, as problem+json, so one client
// cannot hold the service's streams (each one polled the database 3.3
// times a second, with no limit at all).
func TestEventStreamsAreLimited(t *testing.T) {
	t.Parallel()
	s := startShop(t, map[string]string{"ORDER_MAX_STREAMS": "3", "ORDER_MAX_STREAMS_PER_CLIENT": "2"})
	s.product("SKU-0001", "Espresso beans, 1 kg", 2499)
	id := s.place("tok_visa") // stays pending: nothing answers it here
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	refused := func(res *http.Response, status int, detail string) {
		t.Helper()
		defer res.Body.Close()
		var p struct {
			Status int
			Detail string
		}
		err := json.NewDecoder(res.Body).Decode(&p)
		if res.StatusCode != status || res.Header.Get("Content-Type") != "application/problem+json" || err != nil ||
			res.Header.Get("Retry-After") == "" || !strings.Contains(p.Detail, detail) {
			t.Errorf("stream beyond the limit = %d %s (Retry-After %q) %+v %v; want %d problem+json with Retry-After mentioning %q",
				res.StatusCode, res.Header.Get("Content-Type"), res.Header.Get("Retry-After"), p, err, status, detail)
		}
	}
	for range 2 {
		if res := s.streamFrom(ctx, "127.0.0.1", id); res.StatusCode != http.StatusOK {
			t.Fatalf("stream within the limits = %d", res.StatusCode)
		}
	}
	refused(s.streamFrom(ctx, "127.0.0.1", id), http.StatusTooManyRequests, "from your address")
	other := s.streamFrom(ctx, "127.0.0.2", id)
	if other.StatusCode != http.StatusOK {
		t.Fatalf("another client's stream = %d, want 200", other.StatusCode)
	}
	refused(s.streamFrom(ctx, "127.0.0.3", id), http.StatusServiceUnavailable, "too many order event streams")

	// A stream that ends gives its place back.
	other.Body.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		res := s.streamFrom(ctx, "127.0.0.3", id)
		if res.StatusCode == http.StatusOK {
			break
		}
		res.Body.Close()
		if time.Now().After(deadline) {
			t.Fatalf("a stream closed 30 s ago still counts: %d", res.StatusCode)
		}
		time.Sleep(100 * time.Millisecond)
	}
	_, metrics := s.do("GET", "/metrics", "", nil)
	for _, want := range []string{"shop_order_streams_open 3", `shop_order_streams_refused_total{limit="client"} 1`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// TestEventStreamsShareOnePoll: however many streams are open, the
// service reads their orders in one query at a time. Each stream polled
// its order's row on its own, 3.3 times a second: 500 streams made 1,700
// transactions a second. With the orders table locked, the polls wait on
// the lock, where they can be counted.
func TestEventStreamsShareOnePoll(t *testing.T) {
	t.Parallel()
	s := startShop(t, nil)
	s.product("SKU-0001", "Espresso beans, 1 kg", 2499)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for range 3 {
		id := s.place("tok_visa")
		for range 2 {
			if res := s.streamFrom(ctx, "127.0.0.1", id); res.StatusCode != http.StatusOK {
				t.Fatalf("stream = %d", res.StatusCode)
			}
		}
	}
	conn, err := pgx.Connect(ctx, s.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	s.lockOrders()
	// The polls of the orders' rows waiting on the lock, now.
	waiting := func() int {
		var n int
		err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
		    WHERE datname = current_database() AND wait_event_type = 'Lock'
		      AND query LIKE 'SELECT id, customer_id, status%FROM orders WHERE id%'`).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	deadline := time.Now().Add(30 * time.Second)
	for waiting() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no poll waits on the locked orders table after 30 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Watched for a second: six streams polling on their own are six
	// reads waiting within a poll interval (300 ms).
	for end := time.Now().Add(time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if n := waiting(); n > 1 {
			t.Fatalf("%d reads of the orders wait on the lock for 6 streams over 3 orders; want 1, shared", n)
		}
	}
}
