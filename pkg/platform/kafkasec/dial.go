package kafkasec

import (
	"context"
	"net"
	"sync"
	"time"

	"github.com/segmentio/kafka-go/sasl"
)

// kafka-go runs the SASL exchange without a deadline and without looking
// at the context: the Transport clears the socket's deadline after its
// ApiVersions request and before SaslHandshake, and the Dialer's Conn
// sets, before every request, the deadline of the Conn, which nobody has
// set yet. Against a broker that accepts the connection and then never
// answers (hung, overloaded, a proxy whose backend is gone) a reader's
// partition or a writer's produce waited on that connection for good:
// keep-alives do not end a connection whose peer still acknowledges them.
//
// So with SASL on, dialer's function (Transport.Dial, Dialer.DialFunc)
// returns a
// connection whose "no deadline" means the dial's deadline (DialTimeout)
// until the SASL exchange has succeeded: the mechanism is wrapped
// (authenticated) and tells the connection when its last step is done.
// The end of the dial's context is no such signal: it also ends when the
// caller gives up, while kafka-go's exchange goes on regardless.
//
// kafka-go hands the dial function the set-up's context and the mechanism a child of it
// (sasl.WithMetadata), so the two meet through the context's Done channel.
var setups sync.Map // <-chan struct{} (the set-up context's Done) → *setupConn

// dialer returns the Dial function of the Transport and the Dialer: with
// SASL on, one that gives its connections the set-up deadline.
func dialer(saslOn bool) func(ctx context.Context, network, address string) (net.Conn, error) {
	return func(ctx context.Context, network, address string) (net.Conn, error) {
		conn, err := (&net.Dialer{KeepAlive: KeepAlive}).DialContext(ctx, network, address)
		if err != nil {
			return nil, err
		}
		deadline, ok := ctx.Deadline()
		if !saslOn || !ok {
			return conn, nil
		}
		c := &setupConn{Conn: conn, setupDeadline: deadline}
		done := ctx.Done()
		setups.Store(done, c)
		context.AfterFunc(ctx, func() { setups.CompareAndDelete(done, c) })
		return c, nil
	}
}

// withDeadline wraps m (nil: no SASL) so that its sessions' success lifts
// their connections' set-up deadline.
func withDeadline(m sasl.Mechanism) sasl.Mechanism {
	if m == nil {
		return nil
	}
	return mechanism{m}
}

// setupConn is a connection whose zero deadlines mean setupDeadline until
// its SASL exchange succeeds.
type setupConn struct {
	net.Conn
	setupDeadline time.Time

	mu          sync.Mutex
	done        bool      // the exchange succeeded
	read, write time.Time // the deadlines last asked for
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

// bound is the deadline the socket gets for t: t, except that before the
// exchange has succeeded no deadline (or a later one) is setupDeadline.
func (c *setupConn) bound(t time.Time) time.Time {
	if !c.done && (t.IsZero() || t.After(c.setupDeadline)) {
		return c.setupDeadline
	}
	return t
}

// authenticated gives the socket the deadlines last asked for, once the
// SASL exchange has succeeded (no set-up read or write is under way then).
func (c *setupConn) authenticated() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.done = true
	_ = c.Conn.SetReadDeadline(c.read)
	_ = c.Conn.SetWriteDeadline(c.write)
}

// mechanism wraps a SASL mechanism so that a session's success reaches
// its connection (see setups).
type mechanism struct{ sasl.Mechanism }

func (m mechanism) Start(ctx context.Context) (sasl.StateMachine, []byte, error) {
	sess, state, err := m.Mechanism.Start(ctx)
	if err != nil {
		return nil, nil, err
	}
	c, _ := setups.Load(ctx.Done())
	conn, _ := c.(*setupConn)
	return session{StateMachine: sess, conn: conn}, state, nil
}

type session struct {
	sasl.StateMachine
	conn *setupConn // nil: not dialled by dialer's function
}

func (s session) Next(ctx context.Context, challenge []byte) (bool, []byte, error) {
	done, response, err := s.StateMachine.Next(ctx, challenge)
	if done && err == nil && s.conn != nil {
		s.conn.authenticated()
	}
	return done, response, err
}
