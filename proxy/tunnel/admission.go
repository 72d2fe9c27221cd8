package tunnel

import (
	"container/list"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// gate bounds how many TLS handshakes do their CPU work at once. When a
// whole fleet reconnects (the API restarted), starting every handshake at
// once leaves each a sliver of the CPU: they all run out of time, the
// agents retry, and /healthz waits behind thousands of runnable
// goroutines. Through the gate the handshakes take turns instead.
//
// A handshake holds a slot only while it computes: agentConn gives the
// slot back whenever the handshake waits for the peer and queues for one
// again once the peer's next bytes have arrived. So a peer that stalls
// mid-handshake (or never sends a byte) occupies a connection, not a
// slot. Handshakes already admitted go first, oldest admission first, so
// that one admitted handshake waits only for those admitted before it;
// new ones queue in arrival order.
type gate struct {
	mu   sync.Mutex
	free int
	// admitted and fresh hold *waiter.
	admitted, fresh list.List
}

type waiter struct {
	ch chan struct{}
	at time.Time // admission; zero for a new handshake
}

func newGate(slots int) *gate { return &gate{free: slots} }

// acquire waits for a slot until deadline. admitted is when the
// handshake was first let through, zero if never. The error is a timeout
// (os.ErrDeadlineExceeded), as a read past the deadline would be.
func (g *gate) acquire(deadline, admitted time.Time) error {
	g.mu.Lock()
	if g.free > 0 {
		g.free--
		g.mu.Unlock()
		return nil
	}
	w := &waiter{ch: make(chan struct{}, 1), at: admitted}
	q := &g.fresh
	var e *list.Element
	if admitted.IsZero() {
		e = q.PushBack(w)
	} else {
		q = &g.admitted
		after := q.Back()
		for after != nil && after.Value.(*waiter).at.After(admitted) {
			after = after.Prev()
		}
		if after == nil {
			e = q.PushFront(w)
		} else {
			e = q.InsertAfter(w, after)
		}
	}
	g.mu.Unlock()

	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-w.ch:
		return nil
	case <-t.C:
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-w.ch: // granted while the timer fired: it is ours now
		return nil
	default:
	}
	q.Remove(e)
	return os.ErrDeadlineExceeded
}

// release hands the slot to the first waiter, if any.
func (g *gate) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, q := range []*list.List{&g.admitted, &g.fresh} {
		if e := q.Front(); e != nil {
			q.Remove(e)
			e.Value.(*waiter).ch <- struct{}{}
			return
		}
	}
	g.free++
}

// queueTimeout bounds how long a connection that has sent the start of
// its handshake waits for its turn. Agents wait longer than this plus a
// handshake timeout plus probeTimeout before they give up (45 s,
// cellagent/tunnel).
const queueTimeout = 30 * time.Second

// agentConn is an agent's TCP connection as the API uses it. During the
// TLS handshake it paces the handshake through the gate: a connection must
// send its first bytes within the handshake timeout, may then wait up to
// queueTimeout for its turn, and from its first turn (admission) has a
// whole handshake timeout for TLS and hello. Afterwards it notes when the
// agent last sent anything, which is how the API knows an agent is alive
// without pinging it.
type agentConn struct {
	net.Conn
	gate    *gate
	timeout time.Duration
	// accepted is when the connection was accepted.
	accepted time.Time

	// Handshake state, used by the handshake's goroutine only.
	deadline time.Time
	queued   bool
	admitted time.Time
	holding  bool
	// done is set before the session's goroutines start, which read lastRead.
	done     bool
	lastRead atomic.Int64 // unix nanoseconds
}

func newAgentConn(c net.Conn, g *gate, timeout time.Duration) *agentConn {
	now := time.Now()
	ac := &agentConn{Conn: c, gate: g, timeout: timeout, accepted: now, deadline: now.Add(timeout)}
	_ = c.SetDeadline(ac.deadline)
	return ac
}

func (c *agentConn) Read(p []byte) (int, error) {
	if c.done {
		n, err := c.Conn.Read(p)
		if n > 0 {
			c.lastRead.Store(time.Now().UnixNano())
		}
		return n, err
	}
	if c.holding {
		c.gate.release()
		c.holding = false
	}
	n, err := c.Conn.Read(p)
	if err != nil {
		return n, err
	}
	if !c.queued {
		c.queued = true
		c.deadline = time.Now().Add(queueTimeout)
	}
	if err := c.gate.acquire(c.deadline, c.admitted); err != nil {
		return n, err
	}
	c.holding = true
	if c.admitted.IsZero() {
		c.admitted = time.Now()
		c.deadline = c.admitted.Add(c.timeout)
		_ = c.Conn.SetDeadline(c.deadline)
	}
	return n, nil
}

// handshakeDone gives the slot back and clears the deadline; it returns
// when the handshake was admitted, zero if it never was.
func (c *agentConn) handshakeDone() time.Time {
	if c.holding {
		c.gate.release()
		c.holding = false
	}
	c.done = true
	c.lastRead.Store(time.Now().UnixNano())
	_ = c.Conn.SetDeadline(time.Time{})
	return c.admitted
}

// silentFor is how long the agent has sent nothing.
func (c *agentConn) silentFor() time.Duration {
	return time.Since(time.Unix(0, c.lastRead.Load()))
}

// heardSince reports whether the agent has sent anything after t.
func (c *agentConn) heardSince(t time.Time) bool {
	return c.lastRead.Load() > t.UnixNano()
}
