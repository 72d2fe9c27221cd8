package tunnel_test

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	agenttunnel "github.com/cloudfoundry/pcap-server-release/cellagent/tunnel"
	"github.com/cloudfoundry/pcap-server-release/proxy/tunnel"
	"github.com/cloudfoundry/pcap-server-release/test/testpki"
	"github.com/cloudfoundry/pcap-server-release/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type pki struct {
	ca, otherCA  *testpki.CA
	server       tls.Certificate
	agent, rogue tls.Certificate
	serverName   string
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	p := &pki{serverName: "pcap-server-api.service.cf.internal"}
	var err error
	must := func(c tls.Certificate, e error) tls.Certificate {
		if e != nil {
			t.Fatal(e)
		}
		return c
	}
	if p.ca, err = testpki.NewCA("tunnel CA"); err != nil {
		t.Fatal(err)
	}
	if p.otherCA, err = testpki.NewCA("some other CA"); err != nil {
		t.Fatal(err)
	}
	leaf, err := p.ca.Server(p.serverName)
	if err != nil {
		t.Fatal(err)
	}
	p.server = must(leaf.TLS())
	if leaf, err = p.ca.Client("pcap-server agent"); err != nil {
		t.Fatal(err)
	}
	p.agent = must(leaf.TLS())
	if leaf, err = p.otherCA.Client("pcap-server agent"); err != nil {
		t.Fatal(err)
	}
	p.rogue = must(leaf.TLS())
	return p
}

func (p *pki) serverTLS() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{p.server}, ClientCAs: p.ca.Pool(), ClientAuth: tls.RequireAndVerifyClientCert}
}

func (p *pki) clientTLS(cert *tls.Certificate) *tls.Config {
	c := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: p.ca.Pool(), ServerName: p.serverName}
	if cert != nil {
		// Present the certificate even when the server's list of accepted
		// CAs does not name its issuer, as a rogue client would.
		c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	return c
}

// api runs a tunnel server on 127.0.0.1 until the test ends.
type api struct {
	srv  *tunnel.Server
	addr string
}

func startAPI(t *testing.T, p *pki, id, addr string) *api {
	t.Helper()
	srv := tunnel.NewServer(tunnel.Config{TLS: p.serverTLS(), APIID: id, KeepaliveInterval: time.Second, Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	return &api{srv: srv, addr: ln.Addr().String()}
}

// echo is the agent's stream handler in these tests.
func echo(ctx context.Context, s net.Conn) { _, _ = io.Copy(s, s) }

func startAgent(t *testing.T, p *pki, addrs []string, cellIP string, local string) context.CancelFunc {
	t.Helper()
	cfg := agenttunnel.Config{
		Addresses:         addrs,
		TLS:               p.clientTLS(&p.agent),
		KeepaliveInterval: time.Second,
		ResolveInterval:   time.Hour,
		RetryBase:         20 * time.Millisecond,
		RetryMax:          200 * time.Millisecond,
		Hello:             wire.Hello{AgentID: "agent-" + cellIP, CellIPs: []string{cellIP}, AgentVersion: "test"},
		Handle:            echo,
	}
	if local != "" {
		cfg.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
	}
	c := agenttunnel.New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	stop := func() { cancel(); <-done }
	t.Cleanup(stop)
	return stop
}

// waitAgent waits for an agent to be registered under ip.
func waitAgent(t *testing.T, a *api, ip string) *tunnel.Agent {
	t.Helper()
	return waitAgentMatching(t, a, ip, nil)
}

func waitAgentMatching(t *testing.T, a *api, ip string, match func(*tunnel.Agent) bool) *tunnel.Agent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ag, err := a.srv.Registry.WaitFor(ctx, netip.MustParseAddr(ip), match)
	if err != nil {
		t.Fatal(err)
	}
	return ag
}

func assertEcho(t *testing.T, ag *tunnel.Agent) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := ag.Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := s.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(s, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo %q, %v", buf, err)
	}
}

func TestAgentConnectsAndServesStreams(t *testing.T) {
	p := newPKI(t)
	a := startAPI(t, p, "api/0", "127.0.0.1:0")
	startAgent(t, p, []string{a.addr}, "127.0.0.1", "")
	ag := waitAgent(t, a, "127.0.0.1")
	if ag.ID != "agent-127.0.0.1" || ag.Version != "test" {
		t.Fatalf("registered %+v", ag)
	}
	// Several streams at once on one session.
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() { assertEcho(t, ag) })
	}
	wg.Wait()
}

func TestRefusedClientsDoNotDisturbOthers(t *testing.T) {
	p := newPKI(t)
	a := startAPI(t, p, "api/0", "127.0.0.1:0")
	startAgent(t, p, []string{a.addr}, "127.0.0.1", "")
	good := waitAgent(t, a, "127.0.0.1")

	t.Run("no client certificate", func(t *testing.T) {
		assertTLSRefused(t, a.addr, p.clientTLS(nil))
	})
	t.Run("certificate from another CA", func(t *testing.T) {
		assertTLSRefused(t, a.addr, p.clientTLS(&p.rogue))
	})
	t.Run("claims an IP that is not its address", func(t *testing.T) {
		// Connects from 127.0.0.3 but claims 127.0.0.2.
		conn, err := tls.DialWithDialer(&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.3")}}, "tcp", a.addr, p.clientTLS(&p.agent))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		refused := helloOver(t, conn, wire.Hello{MinVersion: 1, MaxVersion: 1, AgentID: "liar", CellIPs: []string{"127.0.0.2"}})
		if refused == nil || refused.Reason != wire.RefusedIdentity || !strings.Contains(refused.Message, "127.0.0.3") {
			t.Fatalf("answer %+v", refused)
		}
		if _, ok := a.srv.Registry.Lookup(netip.MustParseAddr("127.0.0.2")); ok {
			t.Fatal("the false claim was registered")
		}
	})
	t.Run("speaks only a newer protocol", func(t *testing.T) {
		conn, err := tls.Dial("tcp", a.addr, p.clientTLS(&p.agent))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		refused := helloOver(t, conn, wire.Hello{MinVersion: wire.MaxVersion + 1, MaxVersion: wire.MaxVersion + 2, AgentID: "future", CellIPs: []string{"127.0.0.1"}})
		if refused == nil || refused.Reason != wire.RefusedVersion || refused.MaxVersion != wire.MaxVersion {
			t.Fatalf("answer %+v", refused)
		}
	})
	if ag, _ := a.srv.Registry.Lookup(netip.MustParseAddr("127.0.0.1")); ag != good {
		t.Fatal("the good agent's registration changed")
	}
	assertEcho(t, good)
}

func assertTLSRefused(t *testing.T, addr string, cfg *tls.Config) {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, cfg)
	if err == nil {
		// TLS 1.3: the server's verdict on our certificate arrives with
		// the first read.
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		_, err = conn.Read(make([]byte, 1))
		conn.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("connection not refused for its certificate: %v", err)
	}
}

// helloOver plays a minimal agent by hand and returns the refusal, or nil
// after a welcome.
func helloOver(t *testing.T, conn net.Conn, h wire.Hello) *wire.Refused {
	t.Helper()
	ag, refused := dialByHand(t, conn, h)
	if ag != nil {
		ag.sess.Close()
	}
	return refused
}

func TestAgentReconnectsAfterAPIRestart(t *testing.T) {
	p := newPKI(t)
	first := startAPIStoppable(t, p, "127.0.0.1:0")
	startAgent(t, p, []string{first.addr}, "127.0.0.1", "")
	waitAgent(t, first.api, "127.0.0.1")
	first.stop()

	second := startAPI(t, p, "api/0", first.addr)
	start := time.Now()
	assertEcho(t, waitAgent(t, second, "127.0.0.1"))
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("agent took %v to come back", d)
	}
}

type stoppableAPI struct {
	api  *api
	addr string
	stop func()
}

func startAPIStoppable(t *testing.T, p *pki, addr string) *stoppableAPI {
	srv := tunnel.NewServer(tunnel.Config{TLS: p.serverTLS(), APIID: "api/0", KeepaliveInterval: time.Second})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ctx, ln) }()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return &stoppableAPI{api: &api{srv: srv, addr: ln.Addr().String()}, addr: ln.Addr().String(), stop: stop}
}

func TestOneSessionPerAPIReplica(t *testing.T) {
	p := newPKI(t)
	// Listening on every address, the replica is reachable as 127.0.0.1
	// and as 127.0.0.2: two addresses, one replica.
	a := startAPI(t, p, "api/0", ":0")
	_, port, _ := net.SplitHostPort(a.addr)
	c := agenttunnel.New(agenttunnel.Config{
		Addresses:         []string{"127.0.0.1:" + port, "127.0.0.2:" + port},
		TLS:               p.clientTLS(&p.agent),
		KeepaliveInterval: time.Second,
		ResolveInterval:   20 * time.Millisecond,
		RetryBase:         10 * time.Millisecond,
		RetryMax:          50 * time.Millisecond,
		Hello:             wire.Hello{AgentID: "cell", CellIPs: []string{"127.0.0.1"}},
		Handle:            echo,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	defer func() { cancel(); <-done }()
	first := waitAgent(t, a, "127.0.0.1")

	// Many resolve rounds: the second address is refused as a duplicate
	// each time, and the first session is never replaced.
	wctx, wcancel := context.WithTimeout(context.Background(), time.Second)
	defer wcancel()
	if other, err := a.srv.Registry.WaitFor(wctx, netip.MustParseAddr("127.0.0.1"), func(ag *tunnel.Agent) bool { return ag != first }); err == nil {
		t.Fatalf("the session was replaced by one from %s", other.Remote)
	}
	if n := len(a.srv.Registry.Agents()); n != 1 {
		t.Fatalf("%d sessions to api/0", n)
	}
	if peers := c.Peers(); len(peers) != 1 {
		t.Fatalf("agent holds %d sessions: %+v", len(peers), peers)
	}
	assertEcho(t, first)
}

func TestNewSessionReplacesOldForSameCell(t *testing.T) {
	p := newPKI(t)
	a := startAPI(t, p, "api/0", "127.0.0.1:0")
	stop := startAgent(t, p, []string{a.addr}, "127.0.0.1", "")
	old := waitAgent(t, a, "127.0.0.1")
	stop()
	<-old.Closed()
	startAgent(t, p, []string{a.addr}, "127.0.0.1", "")
	assertEcho(t, waitAgentMatching(t, a, "127.0.0.1", func(ag *tunnel.Agent) bool { return ag != old }))
}

// An API address that leaves DNS keeps its working session (captures on
// it go on) but is not dialled again once that session ends.
func TestAddressLeavingDNSIsNotRedialled(t *testing.T) {
	p := newPKI(t)
	first := startAPIStoppable(t, p, "127.0.0.1:0")
	_, port, _ := net.SplitHostPort(first.addr)
	var mu sync.Mutex
	answer := []string{"127.0.0.1"}
	lookups := make(chan struct{}, 100)
	lookup := func(ctx context.Context, host string) ([]string, error) {
		mu.Lock()
		defer mu.Unlock()
		select {
		case lookups <- struct{}{}:
		default:
		}
		return answer, nil
	}
	c := agenttunnel.New(agenttunnel.Config{
		Addresses:         []string{net.JoinHostPort("pcap-server-api.service.cf.internal", port)},
		TLS:               p.clientTLS(&p.agent),
		KeepaliveInterval: time.Second,
		ResolveInterval:   20 * time.Millisecond,
		RetryBase:         10 * time.Millisecond,
		RetryMax:          50 * time.Millisecond,
		Hello:             wire.Hello{AgentID: "cell", CellIPs: []string{"127.0.0.1"}},
		Handle:            echo,
		LookupHost:        lookup,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	defer func() { cancel(); <-done }()
	ag := waitAgent(t, first.api, "127.0.0.1")

	drain := func() {
		for len(lookups) > 0 {
			<-lookups
		}
	}
	mu.Lock()
	answer = []string{"127.0.0.9"} // the replica left DNS; another appeared
	mu.Unlock()
	drain()
	for range 3 { // resolved again at least twice after the change
		<-lookups
	}
	if now, ok := first.api.srv.Registry.Lookup(netip.MustParseAddr("127.0.0.1")); !ok || now != ag {
		t.Fatal("the session of the retired address was cut")
	}
	assertEcho(t, ag)

	first.stop()
	second := startAPI(t, p, "api/0", first.addr)
	drain()
	for range 10 { // many resolve and retry rounds
		<-lookups
	}
	if _, ok := second.srv.Registry.Lookup(netip.MustParseAddr("127.0.0.1")); ok {
		t.Fatal("the agent dialled an address that left DNS")
	}
}

// A name that fails to resolve once keeps its addresses: a DNS hiccup does
// not retire working sessions.
func TestResolveFailureKeepsSessions(t *testing.T) {
	p := newPKI(t)
	a := startAPI(t, p, "api/0", "127.0.0.1:0")
	_, port, _ := net.SplitHostPort(a.addr)
	var mu sync.Mutex
	fail := false
	lookups := make(chan struct{}, 100)
	c := agenttunnel.New(agenttunnel.Config{
		Addresses:         []string{net.JoinHostPort("pcap-server-api.service.cf.internal", port), "127.0.0.9:" + port},
		TLS:               p.clientTLS(&p.agent),
		KeepaliveInterval: time.Second,
		ResolveInterval:   20 * time.Millisecond,
		Hello:             wire.Hello{AgentID: "cell", CellIPs: []string{"127.0.0.1"}},
		Handle:            echo,
		LookupHost: func(ctx context.Context, host string) ([]string, error) {
			if host != "pcap-server-api.service.cf.internal" {
				return []string{host}, nil
			}
			mu.Lock()
			defer mu.Unlock()
			select {
			case lookups <- struct{}{}:
			default:
			}
			if fail {
				return nil, &net.DNSError{Err: "i/o timeout", Name: host, IsTimeout: true}
			}
			return []string{"127.0.0.1"}, nil
		},
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	defer func() { cancel(); <-done }()
	first := waitAgent(t, a, "127.0.0.1")
	mu.Lock()
	fail = true
	mu.Unlock()
	for len(lookups) > 0 {
		<-lookups
	}
	for range 3 {
		<-lookups
	}
	mu.Lock()
	fail = false
	mu.Unlock()
	for range 3 {
		<-lookups
	}
	if now, ok := a.srv.Registry.Lookup(netip.MustParseAddr("127.0.0.1")); !ok || now != first {
		t.Fatal("a failed lookup cost the agent its session")
	}
}
