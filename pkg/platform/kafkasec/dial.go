package kafkasec

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// dial opens the TCP connections of the Transport and the Dialer. The
// connection it returns keeps the dial's deadline (DialTimeout) over the
// whole of kafka-go's connection set-up, SASL exchange included, and
// drops it once the set-up is over.
//
// kafka-go runs the SASL exchange without a deadline: the Transport
// clears the socket's deadline after its ApiVersions request and before
// SaslHandshake, and the Dialer's Conn sets, before every request, the
// deadline of the Conn, which nobody has set yet. Against a broker that
// accepts the connection and then never answers (hung, overloaded, a
// proxy whose backend is gone) a reader's partition or a writer's
// produce waited on that connection for good: keep-alives do not end a
// connection whose peer still acknowledges them, and neither kafka-go
// path looks at the context there. Both pass dial the set-up's context,
// which carries the set-up's deadline and ends when the set-up returns,
// so dial needs no other signal.
func dial(ctx context.Context, network, address string) (net.Conn, error) {
	conn, err := (&net.Dialer{KeepAlive: KeepAlive}).DialContext(ctx, network, address)
	if err != nil {
		return nil, err
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		return conn, nil
	}
	c := &setupConn{Conn: conn, setup: ctx, setupDeadline: deadline}
	// When the set-up ends, the deadlines kafka-go asked for apply as
	// asked: a zero one means none from then on.
	context.AfterFunc(ctx, c.apply)
	return c, nil
}

// setupConn is a connection whose zero deadlines mean setupDeadline while
// setup lasts.
type setupConn struct {
	net.Conn
	setup         context.Context
	setupDeadline time.Time

	mu          sync.Mutex
	read, write time.Time // the deadlines last asked for

	setupIO atomic.Int32 // reads and writes begun during the set-up, under way
}

func (c *setupConn) Read(b []byte) (int, error) {
	if c.setup.Err() == nil {
		c.setupIO.Add(1)
		defer c.setupIO.Add(-1)
	}
	return c.Conn.Read(b)
}

func (c *setupConn) Write(b []byte) (int, error) {
	if c.setup.Err() == nil {
		c.setupIO.Add(1)
		defer c.setupIO.Add(-1)
	}
	return c.Conn.Write(b)
}

func (c *setupConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.read, c.write = t, t
	return c.Conn.SetDeadline(c.bound(t))
}

func (c *setupConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.read = t
	return c.Conn.SetReadDeadline(c.bound(t))
}

func (c *setupConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.write = t
	return c.Conn.SetWriteDeadline(c.bound(t))
}

// bound is the deadline the socket gets for t: t, except that during the
// set-up no deadline is the set-up's.
func (c *setupConn) bound(t time.Time) time.Time {
	if c.setup.Err() == nil && (t.IsZero() || t.After(c.setupDeadline)) {
		return c.setupDeadline
	}
	return t
}

// apply gives the socket the deadlines last asked for; it runs once the
// set-up's context has ended, so bound passes them through. While a read
// or write begun during the set-up is still under way, the set-up has not
// returned: its context ran out or was cancelled under it, and lifting the
// deadline would leave that read waiting for good, so it stays.
func (c *setupConn) apply() {
	if c.setupIO.Load() > 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	_ = c.Conn.SetReadDeadline(c.read)
	_ = c.Conn.SetWriteDeadline(c.write)
}
