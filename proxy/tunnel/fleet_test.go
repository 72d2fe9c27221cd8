package tunnel_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/cloudfoundry/pcap-server-release/internal/muxconfig"
	"github.com/cloudfoundry/pcap-server-release/proxy/tunnel"
	"github.com/cloudfoundry/pcap-server-release/wire"
)

// handAgent is an agent played by hand: its session stays open until the
// test ends or closes it.
type handAgent struct {
	sess *yamux.Session
	ctl  net.Conn
}

// connectByHand connects over conn (TLS already set up) and says hello.
// It returns the agent on a welcome, or the refusal; on a refusal the
// session is closed. The API may close the session as soon as it has
// refused, which can fail the hello's write although it arrived: the
// answer decides.
func connectByHand(conn net.Conn, h wire.Hello) (*handAgent, *wire.Refused, error) {
	sess, err := yamux.Client(conn, muxconfig.Config(nil))
	if err != nil {
		return nil, nil, err
	}
	ctl, err := sess.OpenStream()
	if err != nil {
		sess.Close()
		return nil, nil, err
	}
	_ = ctl.SetDeadline(time.Now().Add(10 * time.Second))
	werr := wire.NewWriter(ctl).WriteMessage(&h)
	f, err := wire.NewReader(ctl).Next()
	if err != nil {
		sess.Close()
		return nil, nil, errors.Join(err, werr)
	}
	m, err := wire.Decode(f)
	if err != nil {
		sess.Close()
		return nil, nil, err
	}
	_ = ctl.SetDeadline(time.Time{})
	if r, ok := m.(*wire.Refused); ok {
		sess.Close()
		return nil, r, nil
	}
	return &handAgent{sess: sess, ctl: ctl}, nil, nil
}

// dialByHand is connectByHand that fails the test on errors and closes
// the session when the test ends.
func dialByHand(t *testing.T, conn net.Conn, h wire.Hello) (*handAgent, *wire.Refused) {
	t.Helper()
	ag, refused, err := connectByHand(conn, h)
	if err != nil {
		t.Fatal(err)
	}
	if ag != nil {
		t.Cleanup(func() { ag.sess.Close() })
	}
	return ag, refused
}

func tlsDial(t *testing.T, p *pki, addr, local string) net.Conn {
	t.Helper()
	d := &net.Dialer{}
	if local != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
	}
	conn, err := tls.DialWithDialer(d, "tcp", addr, p.clientTLS(&p.agent))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func hello(id, run, ip string) wire.Hello {
	return wire.Hello{MinVersion: wire.MinVersion, MaxVersion: wire.MaxVersion, AgentID: id, RunID: run, CellIPs: []string{ip}, AgentVersion: "hand"}
}

func waitClosed(t *testing.T, sess *yamux.Session, what string) {
	t.Helper()
	select {
	case <-sess.CloseChan():
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: the API kept the session open", what)
	}
}

// Agents open no stream; yamux would buffer what such a stream carries
// until its close timeout. The API ends the session of an agent that
// opens one, or that sends anything on the control stream after the
// handshake, and other agents stay.
func TestAgentBreakingTheProtocolLosesItsSession(t *testing.T) {
	p := newPKI(t)
	a := startAPI(t, p, "api/0", "127.0.0.1:0")
	startAgent(t, p, []string{a.addr}, "127.0.0.2", "127.0.0.2")
	good := waitAgent(t, a, "127.0.0.2")

	t.Run("opens a stream", func(t *testing.T) {
		rogue, refused := dialByHand(t, tlsDial(t, p, a.addr, ""), hello("rogue", "run-1", "127.0.0.1"))
		if refused != nil {
			t.Fatal(refused)
		}
		// The API may end the session before OpenStream has returned.
		if st, err := rogue.sess.OpenStream(); err == nil {
			_, _ = st.Write(make([]byte, 200<<10))
		}
		waitClosed(t, rogue.sess, "a stream opened by the agent")
	})
	t.Run("talks on the control stream", func(t *testing.T) {
		rogue, refused := dialByHand(t, tlsDial(t, p, a.addr, ""), hello("rogue", "run-2", "127.0.0.1"))
		if refused != nil {
			t.Fatal(refused)
		}
		_, _ = rogue.ctl.Write([]byte("more hello"))
		waitClosed(t, rogue.sess, "data on the control stream")
	})
	if ag, _ := a.srv.Registry.Lookup(netip.MustParseAddr("127.0.0.2")); ag != good {
		t.Fatal("the well-behaved agent lost its registration")
	}
	assertEcho(t, good)
}

// relay listens on loopback and, for every connection it accepts, dials
// target and runs serve with both ends on the relay's wait group. done is
// closed when the test ends; the relay then waits for every serve.
func relay(t *testing.T, target string, serve func(wg *sync.WaitGroup, client, upstream net.Conn, done <-chan struct{})) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); close(done); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			serve(&wg, c, u, done)
		}
	})
	return ln
}

// freezer forwards TCP connections. freeze stops the ones open so far:
// nothing passes in either direction any more and nothing is closed, as a
// cell that lost power or a dropped route leaves a connection behind.
// Connections made afterwards flow again.
type freezer struct {
	ln     net.Listener
	mu     sync.Mutex
	frozen chan struct{} // closed by freeze, for the connections open then
}

func startFreezer(t *testing.T, target string) *freezer {
	t.Helper()
	f := &freezer{frozen: make(chan struct{})}
	f.ln = relay(t, target, func(wg *sync.WaitGroup, c, u net.Conn, done <-chan struct{}) {
		f.mu.Lock()
		frozen := f.frozen
		f.mu.Unlock()
		for _, pair := range [][2]net.Conn{{c, u}, {u, c}} {
			wg.Go(func() {
				defer pair[1].Close()
				buf := make([]byte, 32<<10)
				for {
					n, err := pair[0].Read(buf)
					select {
					case <-frozen:
						<-done // hold both ends open, silent, until the test ends
						pair[0].Close()
						return
					default:
					}
					if n > 0 {
						if _, werr := pair[1].Write(buf[:n]); werr != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			})
		}
	})
	return f
}

func (f *freezer) addr() string { return f.ln.Addr().String() }

func (f *freezer) freeze() {
	f.mu.Lock()
	defer f.mu.Unlock()
	close(f.frozen)
	f.frozen = make(chan struct{})
}

// With one keep-alive per session, both ends still find a dead peer in
// seconds: the agent's ping goes unanswered and it redials; the API, which
// still holds the dead session, replaces it when the agent comes back.
func TestAgentNoticesADeadConnectionAndComesBack(t *testing.T) {
	p := newPKI(t)
	a := startAPI(t, p, "api/0", "127.0.0.1:0")
	fz := startFreezer(t, a.addr)
	startAgent(t, p, []string{fz.addr()}, "127.0.0.1", "")
	old := waitAgent(t, a, "127.0.0.1")
	assertEcho(t, old) // the agent has its welcome and serves streams
	fz.freeze()
	start := time.Now()
	// waitAgentMatching allows 10s: a keep-alive interval (1s), the ping's
	// timeout (5s) and a retry.
	now := waitAgentMatching(t, a, "127.0.0.1", func(ag *tunnel.Agent) bool { return ag != old })
	t.Logf("back after %s", time.Since(start).Round(time.Millisecond))
	assertEcho(t, now)
}

// An agent that stops answering (its cell died) is dropped by the API:
// silent for 1.5 keep-alive intervals, it is pinged, and the ping times out.
func TestSilentAgentIsDropped(t *testing.T) {
	p := newPKI(t)
	a := startAPI(t, p, "api/0", "127.0.0.1:0")
	fz := startFreezer(t, a.addr)
	if _, refused := dialByHand(t, tlsDial(t, p, fz.addr(), ""), hello("cell", "run-1", "127.0.0.1")); refused != nil {
		t.Fatal(refused)
	}
	ag := waitAgent(t, a, "127.0.0.1")
	fz.freeze()
	start := time.Now()
	select {
	case <-ag.Closed():
		t.Logf("dropped after %s", time.Since(start).Round(time.Millisecond))
	case <-time.After(15 * time.Second):
		t.Fatal("the API still holds the session of an agent that answers nothing")
	}
}

// An agent whose connection died without a FIN reconnects with the same
// run id while the API still holds the dead session: it is admitted at
// once, the dead session replaced. A second live session of the same
// process is still refused as a duplicate.
func TestHalfOpenSessionDoesNotLockTheCellOut(t *testing.T) {
	p := newPKI(t)
	a := startAPI(t, p, "api/0", "127.0.0.1:0")
	fz := startFreezer(t, a.addr)
	h := hello("cell", "run-1", "127.0.0.1")
	first, refused := dialByHand(t, tlsDial(t, p, fz.addr(), ""), h)
	if refused != nil {
		t.Fatal(refused)
	}
	old := waitAgent(t, a, "127.0.0.1")

	if _, refused := dialByHand(t, tlsDial(t, p, a.addr, ""), h); refused == nil || refused.Reason != wire.RefusedDuplicate {
		t.Fatalf("a second live session of the same process: %+v, want refused as duplicate", refused)
	}

	fz.freeze()
	first.sess.Close() // its FIN never reaches the API
	start := time.Now()
	again, refused := dialByHand(t, tlsDial(t, p, a.addr, ""), h)
	if refused != nil {
		t.Fatalf("the reconnecting agent was refused after %s: %s: %s", time.Since(start), refused.Reason, refused.Message)
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("admitted after %s", d)
	}
	select {
	case <-old.Closed():
	default:
		t.Error("the dead session is still open")
	}
	now := waitAgentMatching(t, a, "127.0.0.1", func(ag *tunnel.Agent) bool { return ag != old })
	if n := a.srv.Registry.Count(); n != 1 {
		t.Errorf("registry counts %d agents, want 1", n)
	}
	// The new session carries streams.
	go func() {
		st, err := again.sess.AcceptStream()
		if err == nil {
			_, _ = io.Copy(st, st)
		}
	}()
	assertEcho(t, now)
}

// throttle forwards TCP connections to target, carrying what the client
// sends at rate bytes a second (queued in memory meanwhile) and what the
// server sends at once: a busy uplink, on which the agent's answer to a
// ping waits behind the data it sent before. backlog is closed once a
// connection's queue first holds backlogBytes.
type throttle struct {
	ln           net.Listener
	rate         int
	backlogBytes int64
	backlog      chan struct{}
	once         sync.Once
}

func startThrottle(t *testing.T, target string, rate int, backlogBytes int64) *throttle {
	t.Helper()
	th := &throttle{rate: rate, backlogBytes: backlogBytes, backlog: make(chan struct{})}
	th.ln = relay(t, target, func(wg *sync.WaitGroup, c, u net.Conn, done <-chan struct{}) {
		wg.Go(func() {
			<-done
			c.Close()
			u.Close()
		})
		wg.Go(func() { _, _ = io.Copy(c, u); c.Close() })
		queue := make(chan []byte, 1<<14)
		var queued atomic.Int64
		wg.Go(func() {
			defer close(queue)
			for {
				buf := make([]byte, 32<<10)
				n, err := c.Read(buf)
				if n > 0 {
					if queued.Add(int64(n)) >= th.backlogBytes {
						th.once.Do(func() { close(th.backlog) })
					}
					queue <- buf[:n]
				}
				if err != nil {
					return
				}
			}
		})
		wg.Go(func() {
			defer u.Close()
			// 10 ms worth of bytes on every tick.
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			for chunk := range queue {
				for len(chunk) > 0 {
					<-tick.C
					n := min(len(chunk), th.rate/100)
					if _, err := u.Write(chunk[:n]); err != nil {
						return
					}
					queued.Add(-int64(n))
					chunk = chunk[n:]
				}
			}
		})
	})
	return th
}

func (th *throttle) addr() string { return th.ln.Addr().String() }

// A live session that is busy sending captures answers a ping late: its
// answer waits behind its data. When the same agent process says hello
// again (the same replica reached through a second address), the busy
// session is kept and the newcomer refused as a duplicate.
func TestBusySessionIsNotReplaced(t *testing.T) {
	p := newPKI(t)
	a := startAPI(t, p, "api/0", "127.0.0.1:0")
	// 64 KiB/s; a backlog of 192 KiB is 3 s, more than the probe's 2 s,
	// and within what the API's stream window lets an agent send unread
	// (muxconfig.APIStreamWindow, 1 MiB).
	th := startThrottle(t, a.addr, 64<<10, 192<<10)
	h := hello("cell", "run-1", "127.0.0.1")
	busy, refused := dialByHand(t, tlsDial(t, p, th.addr(), ""), h)
	if refused != nil {
		t.Fatal(refused)
	}
	old := waitAgent(t, a, "127.0.0.1")

	// A capture stream: the agent sends as fast as the window lets it,
	// the API reads all of it.
	var wg sync.WaitGroup
	wg.Go(func() {
		st, err := busy.sess.AcceptStream()
		if err != nil {
			return
		}
		defer st.Close()
		buf := make([]byte, 64<<10)
		for {
			if _, err := st.Write(buf); err != nil {
				return
			}
		}
	})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	s, err := old.Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		s.Close()
		busy.sess.Close()
		wg.Wait()
	}()
	// received carries the bytes read so far after every read.
	received := make(chan int64, 1)
	wg.Go(func() {
		buf := make([]byte, 64<<10)
		var total int64
		for {
			n, err := s.Read(buf)
			if err != nil {
				return
			}
			total += int64(n)
			select {
			case <-received:
			default:
			}
			received <- total
		}
	})
	select {
	case <-th.backlog:
	case <-ctx.Done():
		t.Fatal("the agent's data never queued up on the throttled connection")
	}

	start := time.Now()
	_, refused = dialByHand(t, tlsDial(t, p, a.addr, ""), h)
	if refused == nil || refused.Reason != wire.RefusedDuplicate {
		t.Fatalf("the same process again while its session is busy: %+v, want refused as duplicate", refused)
	}
	t.Logf("refused as duplicate after %s", time.Since(start).Round(time.Millisecond))
	select {
	case <-old.Closed():
		t.Fatal("the busy session was closed")
	default:
	}
	if ag, _ := a.srv.Registry.Lookup(netip.MustParseAddr("127.0.0.1")); ag != old {
		t.Fatal("the busy session lost its registration")
	}
	// Its capture goes on.
	var before, now int64
	for now < before+(64<<10) {
		select {
		case now = <-received:
			if before == 0 {
				before = now
			}
		case <-old.Closed():
			t.Fatal("the busy session was closed")
		case <-ctx.Done():
			t.Fatalf("the busy session's stream stopped after %d bytes", now)
		}
	}
}

// slowHandshakes is the API's TLS configuration with handshakes that
// each run cost, the CPU a handshake costs exaggerated; most says how
// many ran at once at most.
func slowHandshakes(p *pki, cost func(*tls.ClientHelloInfo)) (cfg *tls.Config, most func() int) {
	var mu sync.Mutex
	inFlight, peak := 0, 0
	cfg = p.serverTLS()
	cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		mu.Lock()
		inFlight++
		peak = max(peak, inFlight)
		mu.Unlock()
		cost(hello)
		mu.Lock()
		inFlight--
		mu.Unlock()
		return nil, nil
	}
	return cfg, func() int {
		mu.Lock()
		defer mu.Unlock()
		return peak
	}
}

// When a fleet reconnects at once, TLS handshakes take turns (a bounded
// number compute at a time) and each one's deadline counts from its turn,
// so queued agents do not run out of time.
//
// The test holds one handshake in its turn until the queued agents have
// waited longer than the timeout, then lets them through: how long they
// waited is set by the test, not by the CPU the machine has to spare, and
// each has a whole timeout for its own handshake from its turn.
func TestHandshakesTakeTurns(t *testing.T) {
	p := newPKI(t)
	const timeout = 3 * time.Second
	held, release := make(chan struct{}), make(chan struct{})
	cfg, most := slowHandshakes(p, func(hello *tls.ClientHelloInfo) {
		if hello.Conn.RemoteAddr().(*net.TCPAddr).IP.Equal(net.ParseIP("127.0.0.1")) {
			close(held)
			<-release
		}
	})
	srv := tunnel.NewServer(tunnel.Config{TLS: cfg, APIID: "api/0", KeepaliveInterval: time.Second, MaxHandshakes: 1, HandshakeTimeout: timeout, Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))})
	addr := serve(t, srv)

	connect := func(ip string, connected chan<- struct{}) error {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
		raw, err := d.Dial("tcp", addr)
		if err != nil {
			return fmt.Errorf("%s: %w", ip, err)
		}
		defer raw.Close()
		if connected != nil {
			connected <- struct{}{}
		}
		conn := tls.Client(raw, p.clientTLS(&p.agent))
		if err := conn.Handshake(); err != nil {
			return fmt.Errorf("%s: %w", ip, err)
		}
		ag, refused, err := connectByHand(conn, hello("agent-"+ip, "run", ip))
		switch {
		case err != nil:
			return fmt.Errorf("%s: %w", ip, err)
		case refused != nil:
			return fmt.Errorf("%s refused: %s", ip, refused.Message)
		}
		ag.sess.Close()
		return nil
	}
	// The first agent takes the only turn and keeps it.
	first := make(chan error, 1)
	go func() { first <- connect("127.0.0.1", nil) }()
	select {
	case <-held:
	case err := <-first:
		t.Fatalf("the first agent's handshake ended (%v) before it computed", err)
	}
	// The others queue behind it, longer than the timeout.
	const queued = 3
	var wg sync.WaitGroup
	errs := make(chan error, queued)
	connected := make(chan struct{}, queued)
	for i := range queued {
		ip := fmt.Sprintf("127.0.0.%d", i+2)
		wg.Go(func() {
			if err := connect(ip, connected); err != nil {
				errs <- err
			}
		})
	}
	for range queued {
		<-connected
	}
	time.Sleep(timeout + timeout/2) // the wait in the queue is what is tested
	close(release)

	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("a queued agent: %v", err)
	}
	// The first overran its turn by as much: its own deadline cut it.
	if err := <-first; err == nil {
		t.Error("the handshake held beyond the timeout in its turn succeeded")
	}
	if n := most(); n != 1 {
		t.Errorf("%d handshakes computed at once, want 1", n)
	}
}

// By default a reconnect storm leaves a processor free: handshakes take
// turns in one slot fewer than GOMAXPROCS, so that what the netpoller
// wakes (/healthz's accept loop) need not wait for a handshake to end.
func TestHandshakesLeaveAProcessorFree(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	p := newPKI(t)
	cfg, most := slowHandshakes(p, func(*tls.ClientHelloInfo) { time.Sleep(300 * time.Millisecond) })
	srv := tunnel.NewServer(tunnel.Config{TLS: cfg, APIID: "api/0", KeepaliveInterval: time.Second})
	addr := serve(t, srv)
	var wg sync.WaitGroup
	for i := range 3 {
		ip := fmt.Sprintf("127.0.0.%d", i+1)
		wg.Go(func() {
			d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
			conn, err := tls.DialWithDialer(d, "tcp", addr, p.clientTLS(&p.agent))
			if err != nil {
				t.Errorf("%s: %v", ip, err)
				return
			}
			conn.Close()
		})
	}
	wg.Wait()
	if n := most(); n != 1 {
		t.Errorf("%d handshakes computed at once with GOMAXPROCS 2, want 1", n)
	}
}

func serve(t *testing.T, srv *tunnel.Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	go func() { defer close(done); _ = srv.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	return ln.Addr().String()
}

// Connections that never send a byte, or stop in the middle of their
// ClientHello, hold a connection each but no turn at the handshake: a real
// agent still gets through at once.
func TestStalledHandshakesHoldNoTurn(t *testing.T) {
	p := newPKI(t)
	// Held turns would keep the agent waiting until the stalled
	// connections time out: far longer than a handshake takes even on a
	// busy machine.
	const timeout, within = 20 * time.Second, 5 * time.Second
	srv := tunnel.NewServer(tunnel.Config{TLS: p.serverTLS(), APIID: "api/0", KeepaliveInterval: time.Second, MaxHandshakes: 1, HandshakeTimeout: timeout})
	addr := serve(t, srv)
	for i := range 20 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if i%2 == 1 {
			// A handshake record header that promises 512 bytes, then nothing.
			if _, err := c.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01}); err != nil {
				t.Fatal(err)
			}
		}
	}
	start := time.Now()
	if _, refused := dialByHand(t, tlsDial(t, p, addr, ""), hello("cell", "run-1", "127.0.0.1")); refused != nil {
		t.Fatal(refused)
	}
	if d := time.Since(start); d > within {
		t.Errorf("the agent got through after %s", d)
	}
}
