// Package e2e tests the whole capture path on one machine: real network
// namespaces, real libpcap, real mTLS tunnels, the API's HTTP endpoint,
// the CLI binary, and tshark reading what comes out.
package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/cloudfoundry/pcap-server-release/cellagent/agentconfig"
	"github.com/cloudfoundry/pcap-server-release/cellagent/bpfcompile"
	agentdaemon "github.com/cloudfoundry/pcap-server-release/cellagent/daemon"
	"github.com/cloudfoundry/pcap-server-release/internal/configfile"
	"github.com/cloudfoundry/pcap-server-release/proxy/apiconfig"
	apidaemon "github.com/cloudfoundry/pcap-server-release/proxy/daemon"
	"github.com/cloudfoundry/pcap-server-release/test/netnstest"
	"github.com/cloudfoundry/pcap-server-release/test/testpki"
)

const (
	appGUID  = "0c0ffee0-1111-4222-8333-444455556666"
	appName  = "my-app"
	devToken = "e2e-test-token-0123456789"
)

// bins are the binaries built once for the tests that run them.
var bins struct {
	once            sync.Once
	dir             string
	agent, cli, err string
}

func TestMain(m *testing.M) {
	// In-process agents compile filters in children of this binary.
	bpfcompile.Main()
	code := m.Run()
	if bins.dir != "" {
		os.RemoveAll(bins.dir)
	}
	// Every API, agent and capture the tests started must have ended.
	http.DefaultClient.CloseIdleConnections()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goroutines left behind:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// binary builds (once) and returns the path of pcap-server,
// pcap-server-cli or pcap-server-api.
func binary(t testing.TB, name string) string {
	t.Helper()
	bins.once.Do(func() {
		dir, err := os.MkdirTemp("", "pcap-e2e-bin")
		if err != nil {
			bins.err = err.Error()
			return
		}
		bins.dir = dir
		out, err := exec.Command("go", "build", "-o", dir+"/", "../../cellagent/cmd/pcap-server", "../../cli/cmd/pcap-server-cli", "../../proxy/cmd/pcap-server-api").CombinedOutput()
		if err != nil {
			bins.err = fmt.Sprintf("go build: %v\n%s", err, out)
		}
	})
	if bins.err != "" {
		t.Fatal(bins.err)
	}
	return filepath.Join(bins.dir, name)
}

// pki is the tunnel's certificates, written to files as BOSH would.
type pki struct {
	ca, apiCert, apiKey, agentCert, agentKey string
}

func newPKI(t testing.TB) *pki {
	t.Helper()
	dir := t.TempDir()
	ca, err := testpki.NewCA("e2e tunnel CA")
	if err != nil {
		t.Fatal(err)
	}
	p := &pki{}
	if p.ca, err = ca.WriteFile(dir, "ca"); err != nil {
		t.Fatal(err)
	}
	srv, err := ca.Server("pcap-server-api.service.cf.internal")
	if err != nil {
		t.Fatal(err)
	}
	if p.apiCert, p.apiKey, err = srv.WriteFiles(dir, "api"); err != nil {
		t.Fatal(err)
	}
	cl, err := ca.Client("pcap-server agent")
	if err != nil {
		t.Fatal(err)
	}
	if p.agentCert, p.agentKey, err = cl.WriteFiles(dir, "agent"); err != nil {
		t.Fatal(err)
	}
	return p
}

// apiProc is an API running in-process, on loopback ports.
type apiProc struct {
	d      *apidaemon.Daemon
	url    string
	tunnel string
	cancel context.CancelFunc
	done   chan struct{} // closed when Run has returned
	err    error         // what Run returned
	audit  string
	logs   *syncBuffer // everything the API logged
}

// syncBuffer is a bytes.Buffer safe for the API's concurrent loggers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// stop drains and stops the API, returning Run's error.
func (a *apiProc) stop() error {
	a.cancel()
	<-a.done
	return a.err
}

func startAPI(t testing.TB, p *pki, targets []apiconfig.DevTarget, mutate func(*apiconfig.Config)) *apiProc {
	t.Helper()
	cfg := apiTestConfig(t, p, targets, mutate)
	ctx, cancel := context.WithCancel(context.Background())
	logs := &syncBuffer{}
	d, err := apidaemon.New(ctx, &cfg, io.MultiWriter(t.Output(), logs))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	a := &apiProc{d: d, url: "http://" + d.HTTPAddr().String(), tunnel: d.TunnelAddr().String(), cancel: cancel, done: make(chan struct{}), audit: cfg.AuditLog, logs: logs}
	go func() {
		defer close(a.done)
		a.err = d.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-a.done:
		case <-time.After(time.Minute):
			t.Error("API did not stop within a minute")
		}
	})
	return a
}

// apiTestConfig is an API's configuration on loopback ports, in dev mode
// with targets, changed by mutate and valid.
func apiTestConfig(t testing.TB, p *pki, targets []apiconfig.DevTarget, mutate func(*apiconfig.Config)) apiconfig.Config {
	t.Helper()
	cfg := apiconfig.Default()
	cfg.ID = "pcap-server-api/e2e"
	cfg.LogLevel = "debug"
	cfg.Listen.Address = "127.0.0.1:0"
	cfg.Tunnel.Address = "127.0.0.1:0"
	cfg.Tunnel.TLS = apiconfig.TunnelTLS{Certificate: p.apiCert, PrivateKey: p.apiKey, ClientCA: p.ca}
	cfg.Tunnel.KeepaliveInterval = configfile.Duration(time.Second)
	cfg.Metrics.Address = "127.0.0.1:0"
	cfg.AuditLog = filepath.Join(t.TempDir(), "audit.log")
	cfg.Dev = &apiconfig.Dev{Token: devToken, Targets: targets}
	if mutate != nil {
		mutate(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func agentConfig(p *pki, api *apiProc, cellIP string, netns map[string]string) agentconfig.Config {
	cfg := agentconfig.Default()
	cfg.ID = "cell-" + cellIP
	cfg.LogLevel = "debug"
	cfg.CellIPs = []string{cellIP}
	cfg.API.Addresses = []string{api.tunnel}
	cfg.API.TLS = agentconfig.ClientTLS{Certificate: p.agentCert, PrivateKey: p.agentKey, CA: p.ca, ServerName: "pcap-server-api.service.cf.internal"}
	cfg.API.KeepaliveInterval = configfile.Duration(time.Second)
	cfg.Metrics.Address = "127.0.0.1:0"
	cfg.Dev = &agentconfig.Dev{Netns: netns}
	return cfg
}

// startAgent runs an agent in-process for the cell cellIP (a loopback
// address it dials from) and waits until the API has registered it.
func startAgent(t testing.TB, p *pki, api *apiProc, cellIP string, netns map[string]string) (stop func()) {
	t.Helper()
	return startAgentWith(t, api, agentConfig(p, api, cellIP, netns)).stop
}

// agentProc is an agent running in-process.
type agentProc struct {
	d    *agentdaemon.Daemon
	stop func()
}

func startAgentWith(t testing.TB, api *apiProc, cfg agentconfig.Config) *agentProc {
	t.Helper()
	a := runAgent(t, cfg)
	waitAgent(t, api, cfg.CellIPs[0])
	return a
}

// runAgent runs an agent in-process without waiting for an API to
// register it.
func runAgent(t testing.TB, cfg agentconfig.Config) *agentProc {
	t.Helper()
	cellIP := cfg.CellIPs[0]
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	d, err := agentdaemon.New(&cfg, agentdaemon.Options{LogOutput: t.Output(), LocalAddr: &net.TCPAddr{IP: net.ParseIP(cellIP)}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = d.Run(ctx) }()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return &agentProc{d: d, stop: stop}
}

// startAgentProcess runs the built agent binary; the caller may kill it.
func startAgentProcess(t testing.TB, p *pki, api *apiProc, cellIP string, netns map[string]string) *exec.Cmd {
	t.Helper()
	return startAgentProcessWith(t, api, agentConfig(p, api, cellIP, netns))
}

func startAgentProcessWith(t testing.TB, api *apiProc, cfg agentconfig.Config) *exec.Cmd {
	t.Helper()
	cellIP := cfg.CellIPs[0]
	cmd := exec.Command(binary(t, "pcap-server"), "-config", writeYAML(t, t.TempDir(), "agent.yml", cfg))
	cmd.Stdout, cmd.Stderr = t.Output(), t.Output()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	waitAgent(t, api, cellIP)
	return cmd
}

func waitAgent(t testing.TB, api *apiProc, cellIP string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := api.d.Registry().WaitFor(ctx, netip.MustParseAddr(cellIP), nil); err != nil {
		t.Fatal(err)
	}
}

// captureResp is a capture request's response, body read to the end.
type captureResp struct {
	status  int
	header  http.Header
	trailer http.Header
	body    []byte
	file    string // the body, written to a file for tshark
}

// startCapture sends the request and returns once the status line is in:
// every agent has answered, so the capture runs.
func startCapture(t testing.TB, api *apiProc, query url.Values) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, api.url+"/v1/apps/"+appGUID+"/capture?"+query.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "bearer "+devToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// finish reads the rest of the body (for at most 60 s) and writes it out.
func finish(t testing.TB, resp *http.Response) *captureResp {
	t.Helper()
	return finishWithin(t, resp, time.Minute)
}

// finishWithin is finish for captures that may take longer.
func finishWithin(t testing.TB, resp *http.Response, limit time.Duration) *captureResp {
	t.Helper()
	type result struct {
		body []byte
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		b, err := io.ReadAll(resp.Body)
		ch <- result{b, err}
	}()
	var r result
	select {
	case r = <-ch:
	case <-time.After(limit):
		resp.Body.Close()
		t.Fatalf("capture did not end within %s", limit)
	}
	if r.err != nil && !errors.Is(r.err, io.ErrUnexpectedEOF) {
		t.Logf("reading the body: %v", r.err)
	}
	file := filepath.Join(t.TempDir(), "capture")
	if err := os.WriteFile(file, r.body, 0o644); err != nil {
		t.Fatal(err)
	}
	return &captureResp{status: resp.StatusCode, header: resp.Header, trailer: resp.Trailer, body: r.body, file: file}
}

// tshark reads the file and returns the fields of every packet.
func tshark(t testing.TB, file string, fields ...string) [][]string {
	t.Helper()
	return tsharkArgs(t, file, nil, fields...)
}

// tsharkArgs is tshark with more options, such as -d to decode a port as
// a protocol.
func tsharkArgs(t testing.TB, file string, options []string, fields ...string) [][]string {
	t.Helper()
	if _, err := exec.LookPath("tshark"); err != nil {
		t.Fatal("tshark is not installed (make test installs it)")
	}
	args := append([]string{"-r", file, "-T", "fields", "-E", "separator=|"}, options...)
	for _, f := range fields {
		args = append(args, "-e", f)
	}
	var stderr bytes.Buffer
	cmd := exec.Command("tshark", args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	// Anything on stderr but the warning about running as root means
	// tshark found something wrong with the file.
	var complaints []string
	for _, line := range strings.Split(stderr.String(), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "Running as user \"root\"") {
			complaints = append(complaints, line)
		}
	}
	if err != nil || len(complaints) > 0 {
		t.Fatalf("tshark -r %s: %v\n%s", file, err, strings.Join(complaints, "\n"))
	}
	var rows [][]string
	for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		if line != "" {
			rows = append(rows, strings.Split(line, "|"))
		}
	}
	return rows
}

// app is an app instance: a namespace pair with a UDP listener.
type app struct {
	pair *netnstest.Pair
	conn *net.UDPConn // the peer's socket, connected to the app
}

const udpPort = 9999

func newApp(t testing.TB) *app {
	t.Helper()
	p := netnstest.NewPair(t)
	p.App.ListenUDP(t, netip.AddrPortFrom(netnstest.AppIP, udpPort))
	return &app{pair: p, conn: p.Peer.DialUDP(t, netip.AddrPortFrom(netnstest.AppIP, udpPort))}
}

func payload(tag string, i int) []byte { return fmt.Appendf(nil, "%s-datagram-%06d", tag, i) }

// send sends n datagrams tagged tag to the app.
func (a *app) send(t testing.TB, tag string, n int) {
	t.Helper()
	for i := range n {
		if _, err := a.conn.Write(payload(tag, i)); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
}

func hexOf(b []byte) string { return fmt.Sprintf("%x", b) }
