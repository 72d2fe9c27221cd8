package tunnel

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/cloudfoundry/pcap-server-release/wire"
)

// Errors of Agent.Open, for the API to turn into 503s.
var (
	ErrAgentDraining = errors.New("agent is shutting down")
	ErrAgentLost     = errors.New("agent session is closed")
)

// Agent is one connected agent session.
type Agent struct {
	ID      string
	RunID   string
	Version string
	// Protocol is the wire version negotiated with the agent.
	Protocol    int
	IPs         []netip.Addr
	Remote      netip.AddrPort
	Since       time.Time
	MaxCaptures int
	// Bosh is the VM's BOSH identity from the hello (version 3), nil if
	// the agent did not send one; HostCapture says host capture is on.
	Bosh        *wire.BoshInstance
	HostCapture bool

	sess  *yamux.Session
	conn  *agentConn
	gate  *frameGate
	watch *watchdog
	// openMu makes the streams the API opens take their ids and their
	// registrations with gate in the same order.
	openMu sync.Mutex
	active atomic.Int64
	// refs is how many IPs the registry holds the agent under (its mu).
	refs int
}

// Open opens a stream to the agent: a stop stream, or a capture stream
// whose unread bytes nothing bounds but yamux's window.
func (a *Agent) Open(ctx context.Context) (net.Conn, error) {
	return a.open(ctx, nil)
}

// OpenLimited opens a capture stream whose unread bytes count against
// unread, the capture's: see Unread. Closing the stream lets it go: what
// the agent sends on it afterwards is dropped.
func (a *Agent) OpenLimited(ctx context.Context, unread *Unread) (net.Conn, error) {
	return a.open(ctx, unread)
}

func (a *Agent) open(ctx context.Context, unread *Unread) (net.Conn, error) {
	type result struct {
		s   net.Conn
		err error
	}
	// OpenStream can block while the agent's accept backlog is full; do
	// not let a request wait on it beyond its context.
	ch := make(chan result, 1)
	go func() {
		a.openMu.Lock()
		defer a.openMu.Unlock()
		s, err := a.sess.OpenStream()
		if err != nil {
			ch <- result{nil, err}
			return
		}
		var ls *limitedStream
		var conn net.Conn = s
		if unread != nil {
			ls = &limitedStream{Stream: s, unread: unread, keepBuffer: unread.keepBuffer()}
			conn = ls
		}
		if a.gate != nil {
			a.gate.register(s.StreamID(), ls)
		}
		ch <- result{conn, nil}
	}()
	select {
	case r := <-ch:
		switch {
		case r.err == nil:
			return r.s, nil
		case errors.Is(r.err, yamux.ErrRemoteGoAway):
			return nil, fmt.Errorf("open stream to agent %s: %w", a.ID, ErrAgentDraining)
		case a.sess.IsClosed():
			return nil, fmt.Errorf("open stream to agent %s: %w", a.ID, ErrAgentLost)
		default:
			return nil, fmt.Errorf("open stream to agent %s: %w", a.ID, r.err)
		}
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.s != nil {
				r.s.Close()
			}
		}()
		return nil, fmt.Errorf("open stream to agent %s: %w", a.ID, ctx.Err())
	}
}

// Identity is the VM identity of the agent's hello, nil without one.
func (a *Agent) Identity() *wire.BoshInstance { return a.Bosh }

// Speaks reports whether the session's protocol version is at least v.
func (a *Agent) Speaks(v int) bool { return a.Protocol >= v }

// Closed is closed when the session ends.
func (a *Agent) Closed() <-chan struct{} { return a.sess.CloseChan() }

// Active is the number of captures running on the agent through this API.
func (a *Agent) Active() int64 { return a.active.Load() }

// TryAcquire counts a capture against limit (0: no limit).
func (a *Agent) TryAcquire(limit int) bool {
	for {
		n := a.active.Load()
		if limit > 0 && n >= int64(limit) {
			return false
		}
		if a.active.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// Release undoes TryAcquire.
func (a *Agent) Release() { a.active.Add(-1) }

// Registry maps cell IPs to agent sessions.
type Registry struct {
	mu   sync.RWMutex
	byIP map[netip.Addr]*Agent
	// count is the number of distinct agents in byIP.
	count int
	// changed is closed and replaced on every change, waking WaitFor.
	changed chan struct{}
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{byIP: map[netip.Addr]*Agent{}, changed: make(chan struct{})}
}

// WaitFor returns the agent registered for ip once there is one and match
// accepts it (nil: any), or ctx's error.
func (r *Registry) WaitFor(ctx context.Context, ip netip.Addr, match func(*Agent) bool) (*Agent, error) {
	for {
		r.mu.RLock()
		a, ok := r.byIP[ip.Unmap()]
		changed := r.changed
		r.mu.RUnlock()
		if ok && (match == nil || match(a)) {
			return a, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for an agent on %s: %w", ip, ctx.Err())
		}
	}
}

// notify must be called with mu held for writing.
func (r *Registry) notify() {
	close(r.changed)
	r.changed = make(chan struct{})
}

// Lookup finds the agent of the cell with that IP.
func (r *Registry) Lookup(ip netip.Addr) (*Agent, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	a, ok := r.byIP[ip.Unmap()]
	return a, ok
}

// Count is the number of connected agents, without listing them.
func (r *Registry) Count() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.count
}

// Agents lists the connected agents, sorted by id.
func (r *Registry) Agents() []*Agent {
	r.mu.RLock()
	seen := make(map[*Agent]bool, len(r.byIP))
	out := make([]*Agent, 0, len(r.byIP))
	for _, a := range r.byIP {
		if !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	r.mu.RUnlock()
	slices.SortFunc(out, func(x, y *Agent) int {
		if c := strings.Compare(x.ID, y.ID); c != 0 {
			return c
		}
		return x.Since.Compare(y.Since)
	})
	return out
}

// add registers a under its IPs. A previous session for the same IPs (the
// agent restarted, or its old connection is dead but not yet noticed) is
// returned so that the caller closes it. A live session of the same agent
// process is kept instead, and a is not registered: dup says so.
func (r *Registry) add(a *Agent) (replaced []*Agent, dup *Agent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ip := range a.IPs {
		if old, ok := r.byIP[ip]; ok && old.RunID != "" && old.RunID == a.RunID && old.ID == a.ID && !old.sess.IsClosed() {
			return nil, old
		}
	}
	for _, ip := range a.IPs {
		old, ok := r.byIP[ip]
		if ok && old == a {
			continue
		}
		if ok {
			r.unref(old)
			if !slices.Contains(replaced, old) {
				replaced = append(replaced, old)
			}
		}
		r.byIP[ip] = a
		if a.refs++; a.refs == 1 {
			r.count++
		}
	}
	r.notify()
	return replaced, nil
}

// unref notes that old lost one IP; mu must be held for writing.
func (r *Registry) unref(old *Agent) {
	if old.refs--; old.refs == 0 {
		r.count--
	}
}

// remove unregisters a, leaving IPs that a newer session took over.
func (r *Registry) remove(a *Agent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ip := range a.IPs {
		if r.byIP[ip] == a {
			delete(r.byIP, ip)
			r.unref(a)
		}
	}
	r.notify()
}
