package kafkasec

import (
	"context"
	"net"
	"testing"
	"time"
)

// TestSetupDeadlineEndsWithTheSetup: a deadline dial put in place of "none"
// during the set-up is lifted when the set-up ends, also when nobody sets
// a deadline again (kafka-go's Transport does not before a request
// without one).
func TestSetupDeadlineEndsWithTheSetup(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
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

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	conn, err := dial(ctx, "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Time{}); err != nil { // as kafka-go does before its SASL exchange
		t.Fatal(err)
	}
	cancel() // the set-up is over
	buf := make([]byte, 1)
	if _, err := conn.Read(buf); err != nil {
		t.Fatalf("read after the set-up: %v (the set-up's deadline stayed)", err)
	}
}
