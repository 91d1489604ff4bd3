package kafkasec_test

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol/metadata"

	"github.com/shopflow/shopflow/pkg/platform/broker"
	"github.com/shopflow/shopflow/pkg/platform/kafkasec"
)

// stallAtSASL returns the address of a proxy to the broker at backend that
// passes requests on until a client's SaslHandshake (API key 17), then
// answers nothing more on that connection and keeps it open: a broker
// that hangs in the middle of a login. A broker that hangs from the first
// byte (hungBroker) would not do for the Transport, which bounds its
// ApiVersions request and only then clears the deadline.
func stallAtSASL(t *testing.T, backend string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			client, err := ln.Accept()
			if err != nil {
				return
			}
			server, err := net.Dial("tcp", backend)
			if err != nil {
				client.Close()
				continue
			}
			t.Cleanup(func() { client.Close(); server.Close() })
			go func() { _, _ = io.Copy(client, server) }()
			go func() {
				for {
					var size [4]byte
					if _, err := io.ReadFull(client, size[:]); err != nil {
						return
					}
					req := make([]byte, binary.BigEndian.Uint32(size[:]))
					if _, err := io.ReadFull(client, req); err != nil || len(req) < 2 {
						return
					}
					if binary.BigEndian.Uint16(req) == 17 { // SaslHandshake
						return // stop here; the connection stays open
					}
					if _, err := server.Write(append(size[:], req...)); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// dialerTimed and transportTimed are sec's Dialer and Transport with their
// dial timeout shortened to timeout.
func dialerTimed(t *testing.T, sec kafkasec.Config, timeout time.Duration) *kafka.Dialer {
	t.Helper()
	d, err := sec.Dialer()
	if err != nil {
		t.Fatal(err)
	}
	d.Timeout = timeout
	return d
}

func transportTimed(t *testing.T, sec kafkasec.Config, timeout time.Duration) *kafka.Transport {
	t.Helper()
	tr, err := sec.Transport()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.CloseIdleConnections)
	tr.DialTimeout = timeout
	return tr
}

// within runs f and fails the test if it has not returned after limit.
func within(t *testing.T, limit time.Duration, what string, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(limit):
		t.Fatalf("%s still waiting after %v", what, limit)
		return nil
	}
}

// TestLoginToAHungBrokerEnds: kafka-go runs the SASL exchange without a
// deadline and without looking at the context, so a reader's or a
// writer's connection to a broker that stopped answering in the middle
// of it waited for good. The package's connections bound it by the dial
// timeout.
func TestLoginToAHungBrokerEnds(t *testing.T) {
	t.Parallel()
	addr := stallAtSASL(t, startBroker(t, broker.Config{SASL: users}))
	sec := kafkasec.Config{SASLMechanism: "SCRAM-SHA-256", SASLUsername: "svc256", SASLPassword: "s3cret-256"}
	const timeout = 500 * time.Millisecond

	t.Run("Dialer", func(t *testing.T) {
		t.Parallel()
		d := dialerTimed(t, sec, timeout)
		err := within(t, 15*time.Second, "DialContext", func() error {
			conn, err := d.DialContext(context.Background(), "tcp", addr)
			if err == nil {
				conn.Close()
			}
			return err
		})
		if err == nil || !strings.Contains(err.Error(), "timeout") {
			t.Errorf("DialContext = %v, want a timeout", err)
		}
	})
	t.Run("Transport", func(t *testing.T) {
		t.Parallel()
		tr := transportTimed(t, sec, timeout)
		client := &kafka.Client{Addr: kafka.TCP(addr), Transport: tr}
		err := within(t, 15*time.Second, "Metadata", func() error {
			_, err := client.Metadata(context.Background(), &kafka.MetadataRequest{})
			return err
		})
		if err == nil || !strings.Contains(err.Error(), "timeout") {
			t.Errorf("Metadata = %v, want a timeout", err)
		}
	})
}

// TestConnectionsOutliveTheirDialDeadline: the dial's deadline ends with
// the set-up; a connection used later, with no deadline of its own, works.
func TestConnectionsOutliveTheirDialDeadline(t *testing.T) {
	t.Parallel()
	addr := startBroker(t, broker.Config{SASL: users})
	sec := kafkasec.Config{SASLMechanism: "SCRAM-SHA-512", SASLUsername: "svc512", SASLPassword: "s3cret-512"}
	const timeout = 300 * time.Millisecond

	t.Run("Dialer", func(t *testing.T) {
		t.Parallel()
		d := dialerTimed(t, sec, timeout)
		conn, err := d.DialContext(context.Background(), "tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		time.Sleep(3 * timeout)
		if _, err := conn.Brokers(); err != nil {
			t.Errorf("Brokers after the dial deadline: %v", err)
		}
	})
	t.Run("Transport", func(t *testing.T) {
		t.Parallel()
		tr := transportTimed(t, sec, timeout)
		// Straight to the Transport: kafka.Client would add a deadline
		// of its own to each request.
		for i := range 2 {
			if _, err := tr.RoundTrip(context.Background(), kafka.TCP(addr), &metadata.Request{}); err != nil {
				t.Fatalf("Metadata %d: %v", i, err)
			}
			time.Sleep(3 * timeout)
		}
	})
}
