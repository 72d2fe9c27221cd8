// Package tlsbatch makes a TLS connection write the records of one Write
// with one system call.
//
// crypto/tls writes every record (at most 16 KiB of data) to the network
// on its own, and the tunnel sets TCP_NODELAY: a 160 KiB batch of
// packets went out as ten system calls and ten TCP pushes, each also
// paying for the receiver's processing on a loopback or a short path. The
// agent sends such batches all day; writing them at once is most of what
// tcpdump's file writes cost less.
package tlsbatch

import (
	"crypto/tls"
	"net"
	"sync"
	"sync/atomic"
)

// Conn is a client or server TLS connection over a network connection
// that holds what TLS writes during a Write and sends it at the end.
type Conn struct {
	*tls.Conn
	held *heldConn
	// calls is crypto/tls's interlock of Write and Close, redone here
	// because the network write of a batch happens after tls.Conn.Write
	// has returned, where crypto/tls no longer sees it: 2 for every
	// Write in flight, bit 0 once closed.
	calls atomic.Int32
}

// Client returns a TLS client over raw whose Writes are batched.
func Client(raw net.Conn, cfg *tls.Config) *Conn {
	held := &heldConn{Conn: raw}
	return &Conn{Conn: tls.Client(held, cfg), held: held}
}

// Server returns a TLS server over raw whose Writes are batched.
func Server(raw net.Conn, cfg *tls.Config) *Conn {
	held := &heldConn{Conn: raw}
	return &Conn{Conn: tls.Server(held, cfg), held: held}
}

// Write encrypts p into records and sends them in one write. Records TLS
// writes on its own meanwhile (an alert, a key update from the read side)
// keep their place in the stream: the TLS connection orders its writes,
// and they join the held bytes.
func (c *Conn) Write(p []byte) (int, error) {
	return c.WriteJoined(p, nil)
}

// WriteJoined encrypts first and then second, each into records of its
// own, and sends them in one write: a frame header and its body, written
// by their producer apart, cost the peer one wakeup instead of two.
func (c *Conn) WriteJoined(first, second []byte) (int, error) {
	for {
		x := c.calls.Load()
		if x&1 != 0 {
			return 0, net.ErrClosed
		}
		if c.calls.CompareAndSwap(x, x+2) {
			break
		}
	}
	defer c.calls.Add(-2)
	c.held.hold()
	n, err := c.Conn.Write(first)
	if err == nil && len(second) > 0 {
		var m int
		m, err = c.Conn.Write(second)
		n += m
	}
	if ferr := c.held.release(); err == nil {
		err = ferr
	}
	return n, err
}

// Close closes the connection. With a Write in flight it closes the
// network connection at once, without a close_notify, as crypto/tls does:
// the Write may be stuck on a peer that reads nothing, and a close_notify
// would wait behind it for crypto/tls's own 5 s deadline (the agent
// closes a dead API's session this way before it redials).
func (c *Conn) Close() error {
	var x int32
	for {
		x = c.calls.Load()
		if x&1 != 0 {
			return net.ErrClosed
		}
		if c.calls.CompareAndSwap(x, x|1) {
			break
		}
	}
	if x != 0 {
		return c.held.Conn.Close()
	}
	return c.Conn.Close()
}

// heldConn passes writes through, except between hold and release, when
// it gathers them.
type heldConn struct {
	net.Conn
	mu      sync.Mutex
	holding bool
	buf     []byte
}

func (h *heldConn) hold() {
	h.mu.Lock()
	h.holding = true
	h.mu.Unlock()
}

func (h *heldConn) release() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.holding = false
	if len(h.buf) == 0 {
		return nil
	}
	_, err := h.Conn.Write(h.buf)
	// Keep the buffer for the next batch, unless one huge write grew it.
	if cap(h.buf) > maxKept {
		h.buf = nil
	} else {
		h.buf = h.buf[:0]
	}
	return err
}

// maxKept bounds the buffer kept between writes.
const maxKept = 4 << 20

func (h *heldConn) Write(p []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.holding {
		h.buf = append(h.buf, p...)
		return len(p), nil
	}
	return h.Conn.Write(p)
}
