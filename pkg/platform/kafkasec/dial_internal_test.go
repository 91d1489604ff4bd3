package kafkasec

import (
	"context"
	"errors"
	"net"
	"os"
	"testing"
	"time"
)

// peer accepts one connection and writes "x" to it after a second.
func peer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		time.Sleep(time.Second)
		_, _ = c.Write([]byte("x"))
		time.Sleep(time.Second)
	}()
	return ln.Addr().String()
}

// TestSetupDeadlineLasts: the dial's deadline stands for "none" until the
// SASL exchange succeeds, also after the dial's context has ended (the
// caller gave up; kafka-go's exchange goes on regardless), and is lifted
// once it succeeds, also when nobody sets a deadline again (kafka-go's
// Transport does not before a request without one).
func TestSetupDeadlineLasts(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name          string
		authenticated bool
	}{{"caller gave up", false}, {"exchange succeeded", true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			conn, err := dialer(true)(ctx, "tcp", peer(t))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if err := conn.SetDeadline(time.Time{}); err != nil { // as kafka-go does before its SASL exchange
				t.Fatal(err)
			}
			cancel()
			if tc.authenticated {
				conn.(*setupConn).authenticated()
			}
			start := time.Now()
			_, err = conn.Read(make([]byte, 1))
			switch {
			case tc.authenticated && err != nil:
				t.Fatalf("read after the exchange: %v (the set-up's deadline stayed)", err)
			case !tc.authenticated && !errors.Is(err, os.ErrDeadlineExceeded):
				t.Fatalf("read during the exchange = %v after %v, want the set-up's deadline", err, time.Since(start))
			}
		})
	}
}

// TestDialerWithoutSASL: without SASL there is no exchange to bound, so the
// connections are kafka-go's to time.
func TestDialerWithoutSASL(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	conn, err := dialer(false)(ctx, "tcp", peer(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, ok := conn.(*setupConn); ok {
		t.Error("a connection without SASL got the set-up deadline")
	}
}
