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
	KeepaliveInterval time.Duration
	// TrustClaimedIPs registers an agent under all the IPs it claims, even
	// those that are not the connection's source address. Only for cells
	// behind NAT: it lets any holder of an agent certificate claim any cell.
	TrustClaimedIPs bool
	Logger          *slog.Logger
	Metrics         *apimetrics.Metrics
}

// handshakeTimeout bounds TLS plus hello; a peer that stalls is dropped.
const handshakeTimeout = 10 * time.Second

// Server accepts agent connections.
type Server struct {
	cfg      Config
	log      *slog.Logger
	Registry *Registry
}

// NewServer returns a server with an empty registry.
func NewServer(cfg Config) *Server {
	if cfg.KeepaliveInterval <= 0 {
		cfg.KeepaliveInterval = 10 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{cfg: cfg, log: log, Registry: NewRegistry()}
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
		wg.Go(func() { s.serveConn(ctx, conn) })
	}
}

func (s *Server) serveConn(ctx context.Context, raw net.Conn) {
	remote := addrPort(raw.RemoteAddr())
	log := s.log.With("remote", remote.String())
	conn := tls.Server(raw, s.cfg.TLS)
	hctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	defer cancel()
	if err := conn.HandshakeContext(hctx); err != nil {
		// Without a valid client certificate nothing reaches yamux.
		log.Warn("agent TLS handshake failed", "error", err)
		s.cfg.Metrics.Handshake("tls_failed")
		raw.Close()
		return
	}
	sess, err := yamux.Server(conn, muxconfig.Config(s.cfg.KeepaliveInterval, log))
	if err != nil {
		log.Error("start agent session", "error", err)
		conn.Close()
		return
	}
	defer sess.Close()
	agent, ctl, err := s.handshake(hctx, sess, remote, log)
	if err != nil {
		log.Warn("agent refused", "error", err)
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
	defer s.cfg.Metrics.SessionsChanged(-1)
	log = log.With("agent_id", agent.ID)
	defer s.Registry.remove(agent)
	log.Info("agent connected", "cell_ips", agent.IPs, "version", agent.Version)

	// Agents open no stream after the control stream; refuse any anyway,
	// but keep accepting: yamux acknowledges streams only in Accept.
	go func() {
		for {
			st, err := sess.AcceptStream()
			if err != nil {
				return
			}
			st.Close()
		}
	}()
	// The control stream carries nothing after the handshake; its end, or
	// the session's, is the agent's end.
	ctlDone := make(chan struct{})
	go func() {
		defer close(ctlDone)
		buf := make([]byte, 512)
		for {
			if _, err := ctl.Read(buf); err != nil {
				return
			}
		}
	}()
	select {
	case <-ctx.Done():
	case <-sess.CloseChan():
	case <-ctlDone:
	}
	log.Info("agent disconnected")
}

// handshake reads the agent's hello on the control stream and answers it.
func (s *Server) handshake(ctx context.Context, sess *yamux.Session, remote netip.AddrPort, log *slog.Logger) (*Agent, net.Conn, error) {
	ctl, err := sess.AcceptStreamWithContext(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("no control stream: %w", err)
	}
	deadline, _ := ctx.Deadline()
	_ = ctl.SetDeadline(deadline)
	w := wire.NewWriter(ctl)
	hello, err := wire.Expect[wire.Hello](wire.NewReader(ctl))
	if err != nil {
		return nil, nil, err
	}
	refuse := func(r wire.Refused) (*Agent, net.Conn, error) {
		_ = w.WriteMessage(&r)
		return nil, nil, &refusal{agent: hello.AgentID, reason: r.Reason, msg: r.Message}
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
		log.Warn("agent claims IPs that are not its connection's address; ignoring them", "agent_id", hello.AgentID, "claimed", hello.CellIPs, "accepted", ips)
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
	}
	// Registered before the welcome goes out, so that a duplicate is
	// refused before anything changes for the session that stays.
	replaced, dup := s.Registry.add(agent)
	if dup != nil {
		return refuse(wire.Refused{Reason: wire.RefusedDuplicate,
			Message: fmt.Sprintf("this agent already has a session with API %s (from %s)", s.cfg.APIID, dup.Remote)})
	}
	for _, old := range replaced {
		log.Info("agent session replaced by a newer one", "agent_id", agent.ID, "old_remote", old.Remote.String())
		old.sess.Close()
	}
	welcome := wire.Welcome{Version: version, APIID: s.cfg.APIID, APIVersion: s.cfg.APIVersion}
	for _, ip := range ips {
		welcome.CellIPs = append(welcome.CellIPs, ip.String())
	}
	if err := w.WriteMessage(&welcome); err != nil {
		s.Registry.remove(agent)
		return nil, nil, err
	}
	_ = ctl.SetDeadline(time.Time{})
	return agent, ctl, nil
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
