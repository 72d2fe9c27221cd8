// Package tunnel is the agent's side of the tunnel: it dials every API
// replica, holds one yamux session to each and serves the capture streams
// the API opens on them.
//
// Every configured address is resolved to all its IPs (a BOSH DNS name
// resolves to every API VM) and re-resolved periodically, so that whichever
// replica the gorouter picks can reach this cell. Sessions are
// deduplicated by the API's id: two addresses that lead to the same
// replica keep one session.
package tunnel

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/cloudfoundry/pcap-server-release/cellagent/agentmetrics"
	"github.com/cloudfoundry/pcap-server-release/internal/muxconfig"
	"github.com/cloudfoundry/pcap-server-release/internal/muxjoin"
	"github.com/cloudfoundry/pcap-server-release/internal/tlsbatch"
	"github.com/cloudfoundry/pcap-server-release/wire"
)

// Config configures the tunnel client.
type Config struct {
	// Addresses are host:port pairs; each host is resolved to all its IPs.
	Addresses []string
	// TLS is the client configuration: certificate, CA and server name.
	TLS             *tls.Config
	ResolveInterval time.Duration
	// KeepaliveInterval is how often the agent pings each API replica.
	KeepaliveInterval time.Duration
	// Hello is what the agent says about itself; the versions are filled in.
	Hello wire.Hello
	// Handle serves one capture stream; it must return once ctx is done
	// and the capture has ended.
	Handle func(ctx context.Context, stream net.Conn)
	Logger *slog.Logger

	// LookupHost resolves names; nil means the system resolver.
	LookupHost func(ctx context.Context, host string) ([]string, error)
	// LocalAddr, when set, is the local address tunnel connections use.
	LocalAddr net.Addr
	// RetryBase and RetryMax shape the reconnect backoff; zero means
	// 250ms and 8s.
	RetryBase, RetryMax time.Duration
	Metrics             *agentmetrics.Metrics
}

// Peer is a connected API replica.
type Peer struct {
	APIID   string
	Address string
	Since   time.Time
}

// Client keeps the sessions.
type Client struct {
	cfg   Config
	log   *slog.Logger
	mux   *yamux.Config
	mu    sync.Mutex
	peers map[string]*Peer // by address
	known int              // resolved API addresses
}

// New returns a client; Run starts it.
func New(cfg Config) *Client {
	if cfg.LookupHost == nil {
		cfg.LookupHost = net.DefaultResolver.LookupHost
	}
	if cfg.RetryBase <= 0 {
		cfg.RetryBase = 250 * time.Millisecond
	}
	if cfg.RetryMax <= 0 {
		cfg.RetryMax = 8 * time.Second
	}
	if cfg.ResolveInterval <= 0 {
		cfg.ResolveInterval = 30 * time.Second
	}
	if cfg.KeepaliveInterval <= 0 {
		cfg.KeepaliveInterval = 10 * time.Second
	}
	cfg.Hello.MinVersion, cfg.Hello.MaxVersion = wire.MinVersion, wire.MaxVersion
	cfg.Hello.RunID = rand.Text()
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Client{cfg: cfg, log: log, mux: muxconfig.Config(log), peers: map[string]*Peer{}}
}

// Peers lists the connected API replicas.
func (c *Client) Peers() []Peer {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Peer, 0, len(c.peers))
	for _, p := range c.peers {
		out = append(out, *p)
	}
	slices.SortFunc(out, func(a, b Peer) int { return strings.Compare(a.Address, b.Address) })
	return out
}

// Run keeps a session to every resolved API address until ctx is done.
// Then it tells each API to open no more streams, waits for the running
// captures to end (their handlers see ctx too) and closes the sessions.
func (c *Client) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	// retire is closed when an address leaves DNS: its session may finish
	// (captures on it go on), but it is not dialled again.
	running := map[string]chan struct{}{}
	lastGood := map[string][]string{}
	retry := backoff{base: c.cfg.RetryBase, max: c.cfg.RetryMax}
	for {
		targets, err := c.resolve(ctx, lastGood)
		if err != nil {
			c.log.Warn("resolve API addresses", "error", err)
		}
		for addr, retire := range running {
			if !slices.Contains(targets, addr) {
				c.log.Info("API address gone from DNS; not reconnecting to it", "address", addr)
				close(retire)
				delete(running, addr)
			}
		}
		for _, addr := range targets {
			if _, ok := running[addr]; !ok {
				retire := make(chan struct{})
				running[addr] = retire
				wg.Go(func() { c.keep(ctx, addr, retire) })
			}
		}
		c.mu.Lock()
		c.known = len(running)
		c.reportLocked()
		c.mu.Unlock()
		wait := c.cfg.ResolveInterval
		if len(running) == 0 {
			wait = min(wait, retry.next())
		} else {
			retry.reset()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// resolve turns the configured addresses into ip:port targets. A name
// that fails to resolve keeps the targets it had last time (lastGood), so
// that a DNS hiccup on one name does not retire its working sessions.
func (c *Client) resolve(ctx context.Context, lastGood map[string][]string) ([]string, error) {
	var targets []string
	var errs []error
	for _, a := range c.cfg.Addresses {
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			errs = append(errs, fmt.Errorf("API address %q: %w", a, err))
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		ips, err := c.cfg.LookupHost(rctx, host)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("resolve %s: %w", host, err))
			targets = append(targets, lastGood[a]...)
			continue
		}
		var mine []string
		for _, ip := range ips {
			mine = append(mine, net.JoinHostPort(ip, port))
		}
		lastGood[a] = mine
		targets = append(targets, mine...)
	}
	slices.Sort(targets)
	return slices.Compact(targets), errors.Join(errs...)
}

var errDuplicate = errors.New("already connected to this API replica through another address")

const (
	dialTimeout = 10 * time.Second
	// handshakeTimeout bounds TLS and hello. It is long because the API
	// takes handshakes in turns: after a restart a fleet queues there for
	// up to 30 s, then has 10 s each (plus up to 2 s for the API to probe
	// a session it still holds for this agent), and an agent that gave up
	// would only queue again at the back. It must exceed their sum.
	handshakeTimeout = 45 * time.Second
)

// keep holds a session to addr, reconnecting with backoff, until ctx is
// done or addr is retired.
func (c *Client) keep(ctx context.Context, addr string, retire <-chan struct{}) {
	retry := backoff{base: c.cfg.RetryBase, max: c.cfg.RetryMax}
	for {
		started := time.Now()
		err := c.session(ctx, addr)
		if ctx.Err() != nil {
			return
		}
		var wait time.Duration
		switch {
		case errors.Is(err, errDuplicate):
			wait = c.cfg.ResolveInterval
			c.log.Debug("tunnel duplicate", "address", addr, "error", err)
		default:
			// A session that lived a while was healthy: start over.
			if time.Since(started) > c.cfg.RetryMax {
				retry.reset()
			}
			wait = retry.next()
			c.cfg.Metrics.Reconnect(reasonOf(err))
			c.log.Warn("tunnel down", "address", addr, "error", err, "retry_in", wait.String())
		}
		select {
		case <-ctx.Done():
			return
		case <-retire:
			return
		case <-time.After(wait):
		}
	}
}

// session dials addr, says hello and serves streams until the session ends.
func (c *Client) session(ctx context.Context, addr string) error {
	sess, welcome, err := c.connect(ctx, addr)
	if err != nil {
		return err
	}
	defer sess.Close()
	if !c.claim(addr, welcome.APIID) {
		return fmt.Errorf("%w: %s", errDuplicate, welcome.APIID)
	}
	defer c.release(addr)
	c.log.Info("tunnel up", "address", addr, "api_id", welcome.APIID, "version", welcome.Version, "cell_ips", welcome.CellIPs)
	go c.keepalive(sess)

	var (
		handlers sync.WaitGroup
		mu       sync.Mutex
		closing  bool // no handler starts once set: Wait may begin
	)
	// On shutdown: no new streams (GoAway), let the running captures end,
	// then close, which also ends the accept loop below.
	stop := context.AfterFunc(ctx, func() {
		_ = sess.GoAway()
		mu.Lock()
		closing = true
		mu.Unlock()
		handlers.Wait()
		_ = sess.Close()
	})
	defer stop()
	for {
		stream, err := sess.AcceptStream()
		if err != nil {
			mu.Lock()
			closing = true
			mu.Unlock()
			handlers.Wait()
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return &connectError{reason: agentmetrics.ReasonSessionEnded, err: fmt.Errorf("session with %s ended: %w", welcome.APIID, err)}
		}
		mu.Lock()
		if closing {
			// Opened before the API saw our GoAway: refuse it.
			mu.Unlock()
			stream.Close()
			continue
		}
		handlers.Go(func() {
			defer stream.Close()
			c.cfg.Handle(ctx, stream)
		})
		mu.Unlock()
	}
}

// connect dials, handshakes TLS and the protocol.
func (c *Client) connect(ctx context.Context, addr string) (*yamux.Session, *wire.Welcome, error) {
	// No TCP keep-alive: the session's pings are its one keep-alive.
	d := net.Dialer{LocalAddr: c.cfg.LocalAddr, KeepAlive: -1, Timeout: dialTimeout}
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, &connectError{agentmetrics.ReasonDial, fmt.Errorf("dial API %s: %w", addr, err)}
	}
	dctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	defer cancel()
	// The records of a packet batch go out in one write (tlsbatch).
	conn := tlsbatch.Client(raw, c.cfg.TLS)
	if err := conn.HandshakeContext(dctx); err != nil {
		raw.Close()
		return nil, nil, &connectError{agentmetrics.ReasonTLS, fmt.Errorf("TLS handshake with API %s: %w", addr, err)}
	}
	// And a frame's header goes out with its body (muxjoin).
	sess, err := yamux.Client(muxjoin.New(conn), c.mux)
	if err != nil {
		conn.Close()
		return nil, nil, &connectError{agentmetrics.ReasonHandshake, fmt.Errorf("start session with API %s: %w", addr, err)}
	}
	welcome, err := c.hello(dctx, sess)
	if err != nil {
		sess.Close()
		reason := agentmetrics.ReasonHandshake
		var r *refusedError
		if errors.As(err, &r) {
			if r.r.Reason == wire.RefusedDuplicate {
				// The replica is served by another of our sessions.
				return nil, nil, fmt.Errorf("%w: %s", errDuplicate, r.r.Message)
			}
			reason = agentmetrics.ReasonRefused
		}
		return nil, nil, &connectError{reason, fmt.Errorf("handshake with API %s: %w", addr, err)}
	}
	return sess, welcome, nil
}

func (c *Client) hello(ctx context.Context, sess *yamux.Session) (*wire.Welcome, error) {
	ctl, err := sess.OpenStream()
	if err != nil {
		return nil, fmt.Errorf("open control stream: %w", err)
	}
	deadline, _ := ctx.Deadline()
	_ = ctl.SetDeadline(deadline)
	hello := c.cfg.Hello
	// A refusing API closes the session right after answering, which can
	// fail this write although the hello got through: read the answer
	// before judging.
	werr := wire.NewWriter(ctl).WriteMessage(&hello)
	f, err := wire.NewReader(ctl).NextKnown(nil)
	if err != nil {
		return nil, fmt.Errorf("read answer to hello: %w", errors.Join(err, werr))
	}
	m, err := wire.Decode(f)
	if err != nil {
		return nil, err
	}
	switch m := m.(type) {
	case *wire.Welcome:
		_ = ctl.SetDeadline(time.Time{})
		// The control stream stays open for the session's life; the API
		// closing it ends the session.
		go func() {
			_, _ = io.Copy(io.Discard, ctl)
			sess.Close()
		}()
		return m, nil
	case *wire.Refused:
		return nil, &refusedError{m}
	default:
		return nil, fmt.Errorf("unexpected %s frame in answer to hello", f.Type)
	}
}

// refusedError is the API's Refused answer.
type refusedError struct{ r *wire.Refused }

func (e *refusedError) Error() string {
	return fmt.Sprintf("refused (%s): %s", e.r.Reason, e.r.Message)
}

// connectError is a failed or ended session with its reason for metrics.
type connectError struct {
	reason string
	err    error
}

func (e *connectError) Error() string { return e.err.Error() }
func (e *connectError) Unwrap() error { return e.err }

func reasonOf(err error) string {
	var ce *connectError
	if errors.As(err, &ce) {
		return ce.reason
	}
	return agentmetrics.ReasonSessionEnded
}

// keepalive pings the API every keep-alive interval until the session
// closes, and closes it when a ping is not answered within
// muxconfig.WriteTimeout. These pings are the session's only keep-alive:
// the API knows the agent is alive from them and pings only an agent it
// has not heard from. Each answer is a round-trip sample.
func (c *Client) keepalive(sess *yamux.Session) {
	t := time.NewTicker(c.cfg.KeepaliveInterval)
	defer t.Stop()
	for {
		select {
		case <-sess.CloseChan():
			return
		case <-t.C:
			rtt, err := sess.Ping()
			if err != nil {
				if !sess.IsClosed() {
					c.log.Warn("API does not answer pings; ending the session", "remote", sess.RemoteAddr().String(), "error", err)
					sess.Close()
				}
				return
			}
			c.cfg.Metrics.RTT(rtt)
		}
	}
}

// claim registers the session unless another address already reached the
// same API replica.
func (c *Client) claim(addr, apiID string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	// One session per address (a retired address's session may still
	// run) and one per API replica.
	for a, p := range c.peers {
		if a == addr || p.APIID == apiID {
			return false
		}
	}
	c.peers[addr] = &Peer{APIID: apiID, Address: addr, Since: time.Now()}
	c.reportLocked()
	return true
}

func (c *Client) release(addr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.peers, addr)
	c.reportLocked()
}

// reportLocked updates the session gauges; mu must be held. A replica
// reached through two addresses counts once among the known ones only
// after dedup, so connected can be lower than known for that reason too.
func (c *Client) reportLocked() {
	c.cfg.Metrics.SetSessions(len(c.peers), c.known)
}
