// Package tunnel is the API's side of the tunnel: it accepts the agents'
// mTLS connections, runs the protocol handshake, checks each agent's
// claimed identity and keeps a registry of sessions by cell IP, through
// which the API opens one stream per capture.
package tunnel

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/cloudfoundry/pcap-server-release/internal/muxconfig"
	"github.com/cloudfoundry/pcap-server-release/proxy/apimetrics"
	"github.com/cloudfoundry/pcap-server-release/wire"
)

// Config configures the tunnel server.
type Config struct {
	// TLS must require and verify client certificates.
	TLS               *tls.Config
	APIID, APIVersion string
	// KeepaliveInterval paces the liveness check: agents ping the API
	// every (their own) keep-alive interval; an agent the API has heard
	// nothing from for 1.5 of these intervals is pinged, and its session
	// ends if the ping is not answered within muxconfig.WriteTimeout.
	KeepaliveInterval time.Duration
	// TrustClaimedIPs registers an agent under all the IPs it claims, even
	// those that are not the connection's source address. Only for cells
	// behind NAT: it lets any holder of an agent certificate claim any cell.
	TrustClaimedIPs bool
	// HandshakeTimeout bounds the wait for a connection's first bytes,
	// and TLS plus hello from its turn at the handshake on (the wait for
	// the turn has its own bound). Zero means 10s.
	HandshakeTimeout time.Duration
	// MaxHandshakes is how many TLS handshakes compute at once; zero
	// means one fewer than the CPUs the process may use (at least 1), so
	// that a reconnect storm leaves a processor to everything else.
	MaxHandshakes int
	Logger        *slog.Logger
	Metrics       *apimetrics.Metrics
}

const (
	defaultHandshakeTimeout = 10 * time.Second
	// probeTimeout bounds the ping that decides whether the session an
	// agent already has is still alive when the same agent process says
	// hello again: a live idle session (the same replica reached through
	// a second address) answers within a round trip, a live busy one at
	// least sends data meanwhile; the one left behind by a connection that
	// died without a FIN does neither. It is added to the handshake
	// timeout when needed, so that a hello late in its window still gets
	// the whole probe.
	probeTimeout = 2 * time.Second
	// answerTimeout bounds writing the answer to a hello after a probe.
	answerTimeout = time.Second
)

// Server accepts agent connections.
type Server struct {
	cfg      Config
	log      *slog.Logger
	mux      *yamux.Config
	gate     *gate
	Registry *Registry
}

// NewServer returns a server with an empty registry.
func NewServer(cfg Config) *Server {
	if cfg.KeepaliveInterval <= 0 {
		cfg.KeepaliveInterval = 10 * time.Second
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = defaultHandshakeTimeout
	}
	if cfg.MaxHandshakes <= 0 {
		// A handshake hands its turn to the next one directly, and the
		// next runs at once on the same processor (Go runs a goroutine
		// woken so before its queue): with a turn per processor, a storm
		// kept every processor in such a chain, and what the netpoller
		// woke meanwhile, /healthz's accept loop among it, waited in
		// the global queue (872 ms measured under two busy loops).
		cfg.MaxHandshakes = max(1, runtime.GOMAXPROCS(0)-1)
	}
	if cfg.TLS != nil && !cfg.TLS.SessionTicketsDisabled {
		// Agents never resume a session: a ticket would only cost every
		// handshake (a tenth of its CPU, measured).
		cfg.TLS = cfg.TLS.Clone()
		cfg.TLS.SessionTicketsDisabled = true
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{cfg: cfg, log: log, mux: muxconfig.APIConfig(log), gate: newGate(cfg.MaxHandshakes), Registry: NewRegistry()}
}

// Serve accepts connections on ln until ctx is done, then closes every
// session and returns once all connection goroutines have ended.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("accept agent connection: %w", err)
		}
		wg.Go(func() { s.serveConn(ctx, conn, &wg) })
	}
}

// serveConn runs one agent connection's TLS and protocol handshake. Once
// the session is up, one goroutine holds it besides yamux's two: it
// accepts streams (there must be none) and cleans up when the session
// ends; a timer checks the control stream and the agent's liveness. That
// goroutine starts fresh, so that it does not keep the stack this one grew
// in the handshake: three small goroutines per idle session.
func (s *Server) serveConn(ctx context.Context, raw net.Conn, wg *sync.WaitGroup) {
	remote := addrPort(raw.RemoteAddr())
	if tc, ok := raw.(*net.TCPConn); ok {
		// The session's pings are its keep-alive; TCP's would be a second.
		_ = tc.SetKeepAlive(false)
	}
	ac := newAgentConn(raw, s.gate, s.cfg.HandshakeTimeout)
	conn := tls.Server(ac, s.cfg.TLS)
	err := conn.Handshake()
	admitted := ac.handshakeDone()
	if err != nil {
		// Without a valid client certificate nothing reaches yamux.
		s.log.Warn("agent TLS handshake failed", "remote", remote.String(), "error", err, "admitted", !admitted.IsZero())
		s.cfg.Metrics.Handshake("tls_failed")
		raw.Close()
		return
	}
	frames := newFrameGate(conn)
	sess, err := yamux.Server(frames, s.mux)
	if err != nil {
		s.log.Error("start agent session", "remote", remote.String(), "error", err)
		conn.Close()
		return
	}
	stop := context.AfterFunc(ctx, func() { sess.Close() })
	hctx, cancel := context.WithDeadline(ctx, admitted.Add(s.cfg.HandshakeTimeout))
	defer cancel()
	ctl, err := sess.AcceptStreamWithContext(hctx)
	if err != nil {
		stop()
		sess.Close()
		s.log.Warn("agent refused", "remote", remote.String(), "error", fmt.Errorf("no control stream: %w", err))
		s.cfg.Metrics.Handshake("error")
		return
	}
	// registered carries the agent once the handshake succeeded, nil if it
	// failed, to the goroutine that cleans up.
	registered := make(chan *Agent, 1)
	// Agents open no stream besides the control stream. One that does
	// breaks the protocol, and yamux would buffer what it sends until the
	// stream's close timeout: the session ends at once instead, also
	// during the handshake.
	wg.Go(func() {
		defer stop()
		if st, err := sess.AcceptStream(); err == nil {
			s.log.Warn("agent opened a stream: protocol violation, ending its session", "remote", remote.String(), "stream", st.StreamID())
		}
		sess.Close()
		if agent := <-registered; agent != nil {
			agent.watch.stop()
			s.Registry.remove(agent)
			s.cfg.Metrics.SessionsChanged(-1)
			s.log.Info("agent disconnected", "remote", remote.String(), "agent_id", agent.ID)
		}
	})
	agent, err := s.handshake(hctx, sess, frames, ctl, ac, remote)
	if err != nil {
		registered <- nil
		sess.Close()
		s.log.Warn("agent refused", "remote", remote.String(), "error", err)
		var r *refusal
		if errors.As(err, &r) {
			s.cfg.Metrics.Handshake(string(r.reason))
		} else {
			s.cfg.Metrics.Handshake("error")
		}
		return
	}
	s.cfg.Metrics.Handshake("accepted")
	s.cfg.Metrics.SessionsChanged(1)
	log := []any{"remote", remote.String(), "agent_id", agent.ID, "cell_ips", agent.IPs, "version", agent.Version, "protocol", agent.Protocol}
	if b := agent.Bosh; b != nil {
		log = append(log, "bosh_deployment", b.Deployment, "bosh_instance", b.InstanceGroup+"/"+b.ID, "host_capture", agent.HostCapture)
	}
	s.log.Info("agent connected", log...)
	agent.watch = s.watch(agent, ctl)
	registered <- agent
}

// watchdog checks an agent session without a goroutine of its own. The
// agent's pings (and any other frame) keep it quiet; an agent silent for
// 1.5 keep-alive intervals is pinged, and its session ends if it does not
// answer within muxconfig.WriteTimeout. Each check also looks at the
// control stream: anything the agent sends on it after the handshake, or
// its end, ends the session.
type watchdog struct {
	log   *slog.Logger
	agent *Agent
	ctl   *yamux.Stream
	quiet time.Duration

	mu      sync.Mutex
	timer   *time.Timer
	stopped bool
}

func (s *Server) watch(a *Agent, ctl *yamux.Stream) *watchdog {
	w := &watchdog{log: s.log, agent: a, ctl: ctl, quiet: s.cfg.KeepaliveInterval * 3 / 2}
	w.arm(w.quiet)
	return w
}

func (w *watchdog) arm(d time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case w.stopped:
	case w.timer == nil:
		w.timer = time.AfterFunc(d, w.check)
	default:
		w.timer.Reset(d)
	}
}

// stop ends the checks (the session ended).
func (w *watchdog) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopped = true
	if w.timer != nil {
		w.timer.Stop()
	}
}

func (w *watchdog) check() {
	a := w.agent
	if a.sess.IsClosed() {
		return
	}
	// A read that is due at once takes what is buffered, without waiting.
	_ = w.ctl.SetReadDeadline(time.Now())
	var one [1]byte
	n, err := w.ctl.Read(one[:])
	switch {
	case n > 0:
		w.log.Warn("agent sent data on the control stream after the handshake: protocol violation, ending its session", "remote", a.Remote.String(), "agent_id", a.ID)
		a.sess.Close()
		return
	case !errors.Is(err, yamux.ErrTimeout):
		w.log.Info("agent closed its control stream; ending its session", "remote", a.Remote.String(), "agent_id", a.ID, "error", err)
		a.sess.Close()
		return
	}
	if silent := a.conn.silentFor(); silent < w.quiet {
		w.arm(w.quiet - silent)
		return
	}
	if _, err := a.sess.Ping(); err != nil {
		if !a.sess.IsClosed() {
			w.log.Warn("agent does not answer pings; ending its session", "remote", a.Remote.String(), "agent_id", a.ID, "error", err)
			a.sess.Close()
		}
		return
	}
	w.arm(w.quiet)
}

// handshake reads the agent's hello on the control stream and answers it.
func (s *Server) handshake(ctx context.Context, sess *yamux.Session, frames *frameGate, ctl *yamux.Stream, ac *agentConn, remote netip.AddrPort) (*Agent, error) {
	deadline, _ := ctx.Deadline()
	_ = ctl.SetDeadline(deadline)
	w := wire.NewWriter(ctl)
	hello, err := wire.Expect[wire.Hello](wire.NewReader(ctl))
	if err != nil {
		return nil, err
	}
	refuse := func(r wire.Refused) (*Agent, error) {
		_ = w.WriteMessage(&r)
		return nil, &refusal{agent: hello.AgentID, reason: r.Reason, msg: r.Message}
	}
	version, err := wire.Negotiate(hello.MinVersion, hello.MaxVersion)
	if err != nil {
		return refuse(wire.Refused{Reason: wire.RefusedVersion, Message: err.Error(), MinVersion: wire.MinVersion, MaxVersion: wire.MaxVersion})
	}
	if err := wire.ValidateHello(hello); err != nil {
		return refuse(wire.Refused{Reason: wire.RefusedInvalid, Message: err.Error()})
	}
	ips, err := s.acceptedIPs(hello.CellIPs, remote.Addr())
	if err != nil {
		return refuse(wire.Refused{Reason: wire.RefusedIdentity, Message: err.Error()})
	}
	if len(ips) < len(hello.CellIPs) {
		s.log.Warn("agent claims IPs that are not its connection's address; ignoring them", "agent_id", hello.AgentID, "claimed", hello.CellIPs, "accepted", ips)
	}
	agent := &Agent{
		ID:          hello.AgentID,
		RunID:       hello.RunID,
		Version:     hello.AgentVersion,
		Protocol:    version,
		IPs:         ips,
		Remote:      remote,
		Since:       time.Now(),
		MaxCaptures: hello.MaxCaptures,
		sess:        sess,
		conn:        ac,
		gate:        frames,
	}
	if version >= wire.HostVersion {
		// An identity is only as good as the protocol that defines it.
		agent.Bosh, agent.HostCapture = hello.Bosh, hello.HostCapture
	}
	// Registered before the welcome goes out, so that a duplicate is
	// refused before anything changes for the session that stays.
	replaced, dup := s.Registry.add(agent)
	if dup != nil {
		if d := time.Now().Add(probeTimeout + answerTimeout); d.After(deadline) {
			_ = ctl.SetDeadline(d)
		}
	}
	if dup != nil && !stillAlive(dup, ac.accepted) {
		// The same process reconnects while we still hold its previous
		// session: that connection died without a FIN (half-open).
		s.log.Info("agent reconnected; its previous session does not answer, replacing it", "agent_id", agent.ID, "old_remote", dup.Remote.String())
		dup.sess.Close()
		replaced, dup = s.Registry.add(agent)
	}
	if dup != nil {
		return refuse(wire.Refused{Reason: wire.RefusedDuplicate,
			Message: fmt.Sprintf("this agent already has a session with API %s (from %s)", s.cfg.APIID, dup.Remote)})
	}
	for _, old := range replaced {
		s.log.Info("agent session replaced by a newer one", "agent_id", agent.ID, "old_remote", old.Remote.String())
		old.sess.Close()
	}
	welcome := wire.Welcome{Version: version, APIID: s.cfg.APIID, APIVersion: s.cfg.APIVersion}
	for _, ip := range ips {
		welcome.CellIPs = append(welcome.CellIPs, ip.String())
	}
	if err := w.WriteMessage(&welcome); err != nil {
		s.Registry.remove(agent)
		return nil, err
	}
	_ = ctl.SetDeadline(time.Time{})
	return agent, nil
}

// stillAlive decides whether a, a session the same agent process already
// has, is alive, now that the process says hello on a connection accepted
// at since. A session that has sent anything since then is alive: a
// connection that died before the agent dialled again has been silent
// since. Otherwise it is pinged; it is alive if it answers within
// probeTimeout, or if it sends anything meanwhile: a busy session's answer
// waits behind the data it sends. Only a session silent throughout is
// taken for dead. A live session taken for dead would be closed with the
// captures it carries; a dead one taken for alive only delays the agent
// until the watchdog has closed it.
func stillAlive(a *Agent, since time.Time) bool {
	if a.conn.heardSince(since) {
		return true
	}
	start := time.Now()
	return alive(a.sess, probeTimeout) || a.conn.heardSince(start)
}

// alive pings sess and reports whether it answered within timeout.
func alive(sess *yamux.Session, timeout time.Duration) bool {
	answered := make(chan bool, 1)
	// Ping waits up to muxconfig.WriteTimeout; a session found dead is
	// closed, which ends the wait at once.
	go func() {
		_, err := sess.Ping()
		answered <- err == nil
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case ok := <-answered:
		return ok
	case <-t.C:
		return false
	}
}

// refusal is a Hello the API answered with Refused.
type refusal struct {
	agent  string
	reason wire.RefusalReason
	msg    string
}

func (r *refusal) Error() string { return fmt.Sprintf("agent %q: %s: %s", r.agent, r.reason, r.msg) }

// acceptedIPs decides which claimed IPs the session is registered under:
// only the connection's own source address, unless claims are trusted.
func (s *Server) acceptedIPs(claims []string, remote netip.Addr) ([]netip.Addr, error) {
	var ips []netip.Addr
	for _, c := range claims {
		ip, err := netip.ParseAddr(c)
		if err != nil {
			return nil, err
		}
		ip = ip.Unmap()
		if !slices.Contains(ips, ip) {
			ips = append(ips, ip)
		}
	}
	if s.cfg.TrustClaimedIPs {
		return ips, nil
	}
	if !slices.Contains(ips, remote) {
		return nil, fmt.Errorf("claimed cell IPs %v do not include the connection's address %s", claims, remote)
	}
	return []netip.Addr{remote}, nil
}

func addrPort(a net.Addr) netip.AddrPort {
	if t, ok := a.(*net.TCPAddr); ok {
		ap := t.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}
