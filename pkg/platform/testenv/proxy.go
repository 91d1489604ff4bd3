package testenv

import (
	"net"
	"sync"
	"testing"
)

// Proxy passes TCP connections through to a server (PostgreSQL, in the
// tests that use it) and fails them the ways a network or a server does:
// it closes the connections it carries (Cut: the client reads EOF, as
// when a server or a proxy restarts; Reset: they are reset, as after a
// crash or a network fault), resets every new one as well (Refuse: a
// network path gone), or holds every byte in both directions (Stall: a
// SIGSTOPped proxy, a dead network; the kernel still accepts
// connections), until Restore.
type Proxy struct {
	ln     net.Listener
	target string
	closed chan struct{} // closed when the test ends

	mu      sync.Mutex
	flowing chan struct{} // closed while bytes flow
	refuse  bool
	ended   bool
	conns   map[net.Conn]bool
}

// StartProxy passes each connection made to a loopback port through to
// target (host:port) until the test ends; then it stops listening and
// closes every connection it carries.
func StartProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: proxy: %v", err)
	}
	p := &Proxy{ln: ln, target: target, closed: make(chan struct{}), flowing: make(chan struct{}), conns: map[net.Conn]bool{}}
	close(p.flowing)
	go p.serve()
	t.Cleanup(func() {
		ln.Close()
		close(p.closed) // releases the bytes a stall holds
		p.mu.Lock()
		defer p.mu.Unlock()
		p.ended = true
		p.closeAll(false)
	})
	return p
}

// Addr is the address clients connect to instead of the target's.
func (p *Proxy) Addr() *net.TCPAddr { return p.ln.Addr().(*net.TCPAddr) }

// Cut closes every connection p carries: the client reads EOF. New
// connections pass.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closeAll(false)
}

// Reset closes every connection p carries with a reset, not a clean
// close. New connections pass.
func (p *Proxy) Reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closeAll(true)
}

// Refuse resets every connection p carries, and every new one as soon
// as it comes, until Restore.
func (p *Proxy) Refuse() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refuse = true
	p.closeAll(true)
}

// Stall holds every byte in both directions, on the connections p
// carries and on new ones, until Restore.
func (p *Proxy) Stall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.flowing:
		p.flowing = make(chan struct{})
	default: // stalled already
	}
}

// Restore ends a Refuse or a Stall: bytes flow and new connections pass
// again.
func (p *Proxy) Restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refuse = false
	select {
	case <-p.flowing:
	default:
		close(p.flowing)
	}
}

// closeAll closes the connections p carries, with a reset if rst; p.mu
// is held.
func (p *Proxy) closeAll(rst bool) {
	for c := range p.conns {
		closeConn(c, rst)
	}
	clear(p.conns)
}

func (p *Proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.carry(c)
	}
}

// carry passes c through to the target until either side ends it.
func (p *Proxy) carry(c net.Conn) {
	p.mu.Lock()
	refuse := p.refuse
	p.mu.Unlock()
	if refuse {
		closeConn(c, true)
		return
	}
	s, err := net.Dial("tcp", p.target)
	if err != nil {
		closeConn(c, true)
		return
	}
	p.mu.Lock()
	if p.refuse || p.ended { // meanwhile
		p.mu.Unlock()
		closeConn(c, true)
		closeConn(s, true)
		return
	}
	p.conns[c], p.conns[s] = true, true
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	go p.pipe(s, c, done)
	go p.pipe(c, s, done)
	<-done
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, s)
	p.mu.Unlock()
	c.Close()
	s.Close()
}

// pipe copies src to dst, holding each chunk while p is stalled.
func (p *Proxy) pipe(dst, src net.Conn, done chan<- struct{}) {
	defer func() { done <- struct{}{} }()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			flowing := p.flowing
			p.mu.Unlock()
			select {
			case <-flowing:
			case <-p.closed:
				return
			}
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// closeConn closes c, with a reset rather than a clean close if rst.
func closeConn(c net.Conn, rst bool) {
	if tc, ok := c.(*net.TCPConn); ok && rst {
		_ = tc.SetLinger(0)
	}
	c.Close()
}
