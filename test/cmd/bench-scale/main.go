// Command bench-scale is the fleet-scale benchmark of `make bench-scale`:
// one real pcap-server-api process and N agent sessions, each a real mTLS +
// yamux session of the agent's own tunnel client, dialled from its own
// loopback address (127.x.y.z). Agents answer capture requests the way the
// real agent does (Started, then End once stopped), without libpcap.
//
// It reports the time until all N are connected, the API's RSS and
// goroutines per idle session, capture-open latency with N connected, the
// time until all N are back after the API is killed and restarted, the
// handshake timeouts of that storm and /healthz latency throughout; with
// -hog, two busy loops at normal priority run during the restart. It is
// not a CI gate and not part of the release.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"gopkg.in/yaml.v3"

	agenttunnel "github.com/cloudfoundry/pcap-server-release/cellagent/tunnel"
	"github.com/cloudfoundry/pcap-server-release/internal/configfile"
	"github.com/cloudfoundry/pcap-server-release/proxy/apiconfig"
	"github.com/cloudfoundry/pcap-server-release/test/cputime"
	"github.com/cloudfoundry/pcap-server-release/test/procmem"
	"github.com/cloudfoundry/pcap-server-release/test/testpki"
	"github.com/cloudfoundry/pcap-server-release/wire"
)

const (
	appGUID    = "5ca1ab1e-0000-4000-8000-000000000000"
	token      = "bench-scale-token-0123456789"
	serverName = "pcap-server-api.service.cf.internal"
)

// Targets of the issue for N = 5000 on a 2-core machine.
const (
	targetRejoin     = 15 * time.Second
	targetHealthz    = time.Second
	targetRSSPerSess = 48 << 10
	targetGoroutines = 4
	targetCaptureP99 = 50 * time.Millisecond
	settleAfterJoin  = 20 * time.Second
	connectTimeLimit = 3 * time.Minute
	pollInterval     = 100 * time.Millisecond
	healthzTimeout   = 30 * time.Second
	captureDuration  = "20ms"
	fdHeadroom       = 1000
)

func main() {
	if len(os.Args) == 3 && os.Args[1] == probeArg {
		probe(os.Args[2])
		return
	}
	n := flag.Int("n", 5000, "agent sessions")
	apiBin := flag.String("api", "bin/pcap-server-api", "pcap-server-api binary")
	captures := flag.Int("captures", 300, "capture requests for the open latency")
	hog := flag.Bool("hog", false, "run two busy loops at normal priority during the restart")
	flag.Parse()
	if err := run(*n, *apiBin, *captures, *hog); err != nil {
		fmt.Fprintln(os.Stderr, "bench-scale:", err)
		os.Exit(1)
	}
}

func run(n int, apiBin string, captures int, hog bool) error {
	if n < 1 || n > 250*250 {
		return fmt.Errorf("-n %d: want 1..%d (one loopback address each)", n, 250*250)
	}
	// Both ends hold one descriptor per session, plus listeners and logs;
	// the API inherits the limit.
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	if want := uint64(n + fdHeadroom); lim.Max < want {
		return fmt.Errorf("-n %d needs %d file descriptors per process, the hard limit is %d: raise it (ulimit -Hn) or lower -n", n, want, lim.Max)
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("raise the file descriptor limit: %w", err)
	}
	dir, err := os.MkdirTemp("", "bench-scale")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	b, err := newBench(dir, apiBin, n)
	if err != nil {
		return err
	}
	defer b.stopAPI()

	fmt.Printf("bench-scale: N=%d agent sessions, GOMAXPROCS of this process %d, its niceness %d (the API's and the busy loops' 0), hog during restart: %v\n", n, runtime.GOMAXPROCS(0), niceness(), hog)
	if err := b.startAPI(func() {}); err != nil {
		return err
	}
	base, err := b.apiUsage()
	if err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	health, err := b.watchHealth()
	if err != nil {
		return err
	}
	defer health.stop()
	started := time.Now()
	agents := b.startAgents(ctx)
	defer agents.Wait()
	defer cancel()
	joinedAt, err := health.waitAgents(n, connectTimeLimit)
	if err != nil {
		return err
	}
	joined := joinedAt.Sub(started)
	joinHealth := health.take()
	fmt.Printf("connect:  all %d connected in %.2fs; /healthz max %s, /readyz max %s (p99 %s) over %d probes, %d failed\n",
		n, joined.Seconds(), joinHealth.max.Round(time.Millisecond), joinHealth.readyMax.Round(time.Millisecond), joinHealth.readyP99.Round(time.Millisecond), joinHealth.count, joinHealth.failed)

	time.Sleep(settleAfterJoin) // idle sessions: nothing to await but time
	idle, err := b.apiUsage()
	if err != nil {
		return err
	}
	rssPer := float64(idle.rss-base.rss) / float64(n)
	gPer := float64(idle.goroutines-base.goroutines) / float64(n)
	fmt.Printf("idle:     API RSS %.1f MiB (%.1f MiB with no agent): %.1f KiB per session; goroutines %d (%d): %.2f per session; heap in use %.1f KiB, stacks %.1f KiB per session\n",
		mib(idle.rss), mib(base.rss), rssPer/1024, idle.goroutines, base.goroutines, gPer,
		float64(idle.heap-base.heap)/float64(n)/1024, float64(idle.stack-base.stack)/float64(n)/1024)

	lat, failed := b.captureLatency(captures)
	p50, p99 := percentile(lat, 50), percentile(lat, 99)
	fmt.Printf("capture:  %d opens with %d connected: p50 %s, p99 %s, max %s, %d failed\n",
		len(lat), n, p50.Round(100*time.Microsecond), p99.Round(100*time.Microsecond), percentile(lat, 100).Round(100*time.Microsecond), failed)

	var hogs []*exec.Cmd
	if hog {
		if hogs, err = startHogs(2); err != nil {
			return err
		}
	}
	health.take()
	timeoutsBefore := agents.timeouts.Load()
	apiTimeoutsBefore := b.apiHandshakeTimeouts()
	ownBefore := ownCPU()
	killed := time.Now()
	health.downSince(killed) // a probe cut by the kill is not the API's fault
	b.killAPI()
	if err := b.startAPI(func() { health.upSince(time.Now()) }); err != nil {
		stopHogs(hogs)
		return err
	}
	backAt, err := health.waitAgents(n, connectTimeLimit)
	rejoin := backAt.Sub(killed)
	apiCPU, _ := cputime.Tree(b.api.Process.Pid)
	agentsCPU := ownCPU() - ownBefore
	stopHogs(hogs)
	if err != nil {
		return err
	}
	storm := health.take()
	agentTimeouts := agents.timeouts.Load() - timeoutsBefore
	apiTimeouts := b.apiHandshakeTimeouts() - apiTimeoutsBefore
	fmt.Printf("restart:  API killed and restarted: all %d back %.2fs after the kill; handshake timeouts: %d seen by agents, %d logged by the API\n",
		n, rejoin.Seconds(), agentTimeouts, apiTimeouts)
	fmt.Printf("          CPU until then: API %.1fs (%.2f ms per agent), agents %.1fs, of %.1fs on %d cores\n",
		apiCPU.Seconds(), float64(apiCPU.Milliseconds())/float64(n), agentsCPU.Seconds(), rejoin.Seconds()*float64(runtime.NumCPU()), runtime.NumCPU())
	fmt.Printf("          /healthz during the storm: max %s, p99 %s; /readyz max %s, p99 %s; over %d probes, %d failed (%d while down)\n",
		storm.max.Round(time.Millisecond), storm.p99.Round(time.Millisecond), storm.readyMax.Round(time.Millisecond), storm.readyP99.Round(time.Millisecond), storm.count, storm.failed, storm.refused)

	fmt.Println()
	fmt.Println("targets (N=5000, 2 cores):")
	check := func(ok bool, what string) {
		mark := "ok  "
		if !ok {
			mark = "MISS"
		}
		fmt.Printf("  %s %s\n", mark, what)
	}
	check(rejoin <= targetRejoin, fmt.Sprintf("all back within %s of the restart: %.2fs", targetRejoin, rejoin.Seconds()))
	check(agentTimeouts == 0 && apiTimeouts == 0, fmt.Sprintf("no handshake timeouts: %d (agents), %d (API)", agentTimeouts, apiTimeouts))
	worst := max(joinHealth.max, storm.max, joinHealth.readyMax, storm.readyMax)
	check(worst < targetHealthz && storm.failed == 0 && joinHealth.failed == 0, fmt.Sprintf("/healthz and /readyz under %s throughout: max %s", targetHealthz, worst.Round(time.Millisecond)))
	check(rssPer <= targetRSSPerSess, fmt.Sprintf("at most %d KiB RSS per idle session: %.1f KiB", targetRSSPerSess>>10, rssPer/1024))
	check(gPer <= targetGoroutines, fmt.Sprintf("at most %d goroutines per idle session: %.2f", targetGoroutines, gPer))
	check(p99 <= targetCaptureP99 && failed == 0, fmt.Sprintf("capture-open p99 at most %s: %s", targetCaptureP99, p99.Round(100*time.Microsecond)))
	return nil
}

// bench is the API process and what the agents need to reach it.
type bench struct {
	dir, apiBin, configPath string
	n                       int
	httpURL, tunnelAddr     string
	metricsURL              string
	apiLog                  string
	clientTLS               *tls.Config
	api                     *exec.Cmd
	http                    *http.Client
}

func newBench(dir, apiBin string, n int) (*bench, error) {
	ca, err := testpki.NewCA("bench-scale CA")
	if err != nil {
		return nil, err
	}
	caFile, err := ca.WriteFile(dir, "ca")
	if err != nil {
		return nil, err
	}
	srv, err := ca.Server(serverName)
	if err != nil {
		return nil, err
	}
	certFile, keyFile, err := srv.WriteFiles(dir, "api")
	if err != nil {
		return nil, err
	}
	client, err := ca.Client("pcap-server agent")
	if err != nil {
		return nil, err
	}
	clientCert, err := client.TLS()
	if err != nil {
		return nil, err
	}
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	cfg := apiconfig.Default()
	cfg.ID = "pcap-server-api/bench"
	cfg.Listen.Address = ports[0]
	cfg.Tunnel.Address = ports[1]
	cfg.Metrics.Address = ports[2]
	cfg.Tunnel.TLS = apiconfig.TunnelTLS{Certificate: certFile, PrivateKey: keyFile, ClientCA: caFile}
	cfg.AuditLog = filepath.Join(dir, "audit.log")
	cfg.Limits.CapturesPerAgent = 5
	cfg.DrainTimeout = configfile.Duration(time.Second)
	cfg.Dev = &apiconfig.Dev{Token: token}
	for i := range n {
		cfg.Dev.Targets = append(cfg.Dev.Targets, apiconfig.DevTarget{AppGUID: appGUID, AppName: "bench", Index: i, CellIP: cellIP(i)})
	}
	data, err := yaml.Marshal(&cfg)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "api.yml")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return nil, err
	}
	return &bench{
		dir: dir, apiBin: apiBin, configPath: path, n: n,
		httpURL:    "http://" + ports[0],
		tunnelAddr: ports[1],
		metricsURL: "http://" + ports[2] + "/metrics",
		apiLog:     filepath.Join(dir, "api.log"),
		clientTLS: &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: ca.Pool(), ServerName: serverName,
			Certificates: []tls.Certificate{clientCert}},
		http: &http.Client{Timeout: healthzTimeout, Transport: &http.Transport{DisableKeepAlives: true}},
	}, nil
}

// cellIP is agent i's loopback address: 127.1.0.1, 127.1.0.2, ...
func cellIP(i int) string { return fmt.Sprintf("127.%d.%d.%d", 1+i/(250*250), 1+i/250%250, 1+i%250) }

func freePorts(n int) ([]string, error) {
	var addrs []string
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		addrs = append(addrs, ln.Addr().String())
		defer ln.Close()
	}
	return addrs, nil
}

func (b *bench) startAPI(started func()) error {
	logFile, err := os.OpenFile(b.apiLog, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd := atNormalPriority(b.apiBin, "-config", b.configPath)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", b.apiBin, err)
	}
	b.api = cmd
	started()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := b.http.Get(b.httpURL + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(10 * time.Millisecond) // polling a process we do not control
	}
	return fmt.Errorf("the API did not turn ready within 30s; see its log:\n%s", tail(b.apiLog))
}

func (b *bench) killAPI() {
	if b.api != nil {
		_ = b.api.Process.Kill()
		_ = b.api.Wait()
		b.api = nil
	}
}

func (b *bench) stopAPI() {
	if b.api != nil {
		_ = b.api.Process.Signal(syscall.SIGTERM)
		_ = b.api.Wait()
		b.api = nil
	}
}

// usage is what the API process holds.
type usage struct {
	rss         int64
	goroutines  int
	heap, stack int64
}

func (b *bench) apiUsage() (usage, error) {
	var u usage
	mem, err := procmem.Read(b.api.Process.Pid)
	if err != nil {
		return u, err
	}
	u.rss = mem.RSS
	m, err := b.metrics()
	if err != nil {
		return u, err
	}
	u.goroutines = int(m["go_goroutines"])
	u.heap = int64(m["go_memstats_heap_inuse_bytes"])
	u.stack = int64(m["go_memstats_stack_inuse_bytes"])
	return u, nil
}

// metrics scrapes the API's unlabelled samples.
func (b *bench) metrics() (map[string]float64, error) {
	resp, err := b.http.Get(b.metricsURL)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		name, value, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		if v, err := strconv.ParseFloat(strings.Fields(value)[0], 64); err == nil {
			out[name] = v
		}
	}
	return out, sc.Err()
}

// apiHandshakeTimeouts counts the API's log lines about agent handshakes
// that ran out of time (TLS or hello), over every API process so far.
func (b *bench) apiHandshakeTimeouts() int {
	data, err := os.ReadFile(b.apiLog)
	if err != nil {
		return 0
	}
	n := 0
	for _, line := range bytes.Split(data, []byte("\n")) {
		if !bytes.Contains(line, []byte("handshake failed")) && !bytes.Contains(line, []byte("agent refused")) {
			continue
		}
		if bytes.Contains(line, []byte("timeout")) || bytes.Contains(line, []byte("deadline exceeded")) {
			n++
		}
	}
	return n
}

// agents are the N agent sessions.
type agents struct {
	wg       sync.WaitGroup
	timeouts atomic.Int64 // connection attempts that ended in a timeout
}

func (a *agents) Wait() { a.wg.Wait() }

func (b *bench) startAgents(ctx context.Context) *agents {
	a := &agents{}
	log := slog.New(&timeoutCounter{n: &a.timeouts})
	for i := range b.n {
		ip := cellIP(i)
		c := agenttunnel.New(agenttunnel.Config{
			Addresses:         []string{b.tunnelAddr},
			TLS:               b.clientTLS,
			KeepaliveInterval: 10 * time.Second,
			ResolveInterval:   time.Hour,
			Hello:             wire.Hello{AgentID: fmt.Sprintf("bench-agent-%05d", i), CellIPs: []string{ip}, AgentVersion: "bench", MaxCaptures: 5},
			Handle:            answerLikeAnAgent,
			Logger:            log,
			LocalAddr:         &net.TCPAddr{IP: net.ParseIP(ip)},
		})
		a.wg.Go(func() { _ = c.Run(ctx) })
	}
	return a
}

// answerLikeAnAgent plays the agent's side of a capture stream: Started,
// then End with the reason of the API's Stop (no packets: the benchmark
// is about sessions, not the capture path).
func answerLikeAnAgent(ctx context.Context, s net.Conn) {
	r, w := wire.NewReader(s), wire.NewWriter(s)
	_ = s.SetReadDeadline(time.Now().Add(10 * time.Second))
	req, err := wire.Expect[wire.CaptureRequest](r)
	if err != nil {
		return
	}
	_ = s.SetReadDeadline(time.Time{})
	if err := w.WriteMessage(&wire.Started{LinkType: 1, Snaplen: req.Snaplen, Device: req.Device, Container: "bench"}); err != nil {
		return
	}
	stop := context.AfterFunc(ctx, func() { _ = s.SetReadDeadline(time.Now()) })
	defer stop()
	reason := wire.EndAgentDraining
	for {
		f, err := r.NextKnown(nil)
		if err != nil {
			break
		}
		if f.Type == wire.TypeStop {
			if m, err := wire.Decode(f); err == nil {
				reason = m.(*wire.Stop).Reason
			}
			break
		}
	}
	_ = w.WriteMessage(&wire.End{Reason: reason})
}

// timeoutCounter is the agents' log handler: it counts "tunnel down"
// records whose error is a timeout and drops everything else.
type timeoutCounter struct{ n *atomic.Int64 }

func (h *timeoutCounter) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (h *timeoutCounter) WithAttrs([]slog.Attr) slog.Handler           { return h }
func (h *timeoutCounter) WithGroup(string) slog.Handler                { return h }
func (h *timeoutCounter) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "tunnel down" {
		return nil
	}
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "error" {
			s := a.Value.String()
			if strings.Contains(s, "timeout") || strings.Contains(s, "deadline exceeded") {
				h.n.Add(1)
			}
			return false
		}
		return true
	})
	return nil
}

// probeArg makes this program the prober: a process of its own, so that
// the latencies it sees are the API's, not this process's scheduling
// delays while it runs thousands of agent sessions.
const probeArg = "probe-health"

// probe asks /healthz and then /readyz every pollInterval and prints one
// line per round: start time (Unix ns), /healthz latency (ns) and result,
// /readyz latency and the agent count it reports. It ends when its stdin
// closes (the benchmark ended).
func probe(base string) {
	client := &http.Client{Timeout: healthzTimeout, Transport: &http.Transport{DisableKeepAlives: true}}
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	get := func(path string) (time.Duration, string, []byte) {
		start := time.Now()
		resp, err := client.Get(base + path)
		if err != nil {
			if errors.Is(err, syscall.ECONNREFUSED) {
				return time.Since(start), "refused", nil
			}
			return time.Since(start), "error", nil
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return time.Since(start), strconv.Itoa(resp.StatusCode), body
	}
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for range t.C {
		start := time.Now()
		hd, hres, _ := get("/healthz")
		rd, rres, body := get("/readyz")
		var ready struct {
			Agents int `json:"agents"`
		}
		_ = json.Unmarshal(body, &ready)
		fmt.Printf("%d %d %s %d %s %d\n", start.UnixNano(), hd, hres, rd, rres, ready.Agents)
	}
}

// healthWatch reads the prober's lines.
type healthWatch struct {
	cmd   *exec.Cmd
	stdin io.Closer

	mu               sync.Mutex
	changed          chan struct{} // closed and replaced on every line
	lat, readyLat    []time.Duration
	failed, refused  int
	agents           int
	agentsAt         time.Time
	downFrom, downTo time.Time
}

type healthSummary struct {
	count, failed, refused       int
	max, p99, readyMax, readyP99 time.Duration
}

func (b *bench) watchHealth() (*healthWatch, error) {
	cmd := exec.Command("/proc/self/exe", probeArg, b.httpURL)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the prober: %w", err)
	}
	h := &healthWatch{cmd: cmd, stdin: stdin, changed: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			h.record(sc.Text())
		}
	}()
	return h, nil
}

func (h *healthWatch) stop() {
	h.stdin.Close()
	_ = h.cmd.Wait()
}

func (h *healthWatch) record(line string) {
	var startNs, hd, rd int64
	var hres, rres string
	var agents int
	if _, err := fmt.Sscanf(line, "%d %d %s %d %s %d", &startNs, &hd, &hres, &rd, &rres, &agents); err != nil {
		return
	}
	start := time.Unix(0, startNs)
	h.mu.Lock()
	defer h.mu.Unlock()
	down := !h.downFrom.IsZero() && !start.Before(h.downFrom) && (h.downTo.IsZero() || start.Before(h.downTo))
	switch {
	case hres == "200":
		h.lat = append(h.lat, time.Duration(hd))
	case down || hres == "refused":
		h.refused++ // the API is down between kill and restart
	default:
		h.failed++
	}
	stale := !h.downFrom.IsZero() && start.Before(h.downFrom) // asked the killed API
	switch {
	case stale:
	case rres == "200":
		h.readyLat = append(h.readyLat, time.Duration(rd))
		// When the answer left the API: the end of the request, less
		// nothing the benchmark process did.
		h.agents, h.agentsAt = agents, start.Add(time.Duration(hd+rd))
	default:
		h.agents = 0
	}
	close(h.changed)
	h.changed = make(chan struct{})
}

func (h *healthWatch) downSince(t time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.downFrom, h.downTo = t, time.Time{}
	h.agents = 0
}

func (h *healthWatch) upSince(t time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.downTo = t
}

// waitAgents returns when /readyz first reported n agents.
func (h *healthWatch) waitAgents(n int, limit time.Duration) (time.Time, error) {
	timeout := time.After(limit)
	for {
		h.mu.Lock()
		got, at, changed := h.agents, h.agentsAt, h.changed
		h.mu.Unlock()
		if got >= n {
			return at, nil
		}
		select {
		case <-changed:
		case <-timeout:
			return time.Time{}, fmt.Errorf("only %d of %d agents connected within %s", got, n, limit)
		}
	}
}

// take summarises and resets the probes so far.
func (h *healthWatch) take() healthSummary {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := healthSummary{count: len(h.lat), failed: h.failed, refused: h.refused,
		max: percentile(h.lat, 100), p99: percentile(h.lat, 99), readyMax: percentile(h.readyLat, 100), readyP99: percentile(h.readyLat, 99)}
	h.lat, h.readyLat, h.failed, h.refused = nil, nil, 0, 0
	return s
}

// captureLatency opens captures one after another on random instances and
// measures the time to the response header (every agent answered).
func (b *bench) captureLatency(count int) ([]time.Duration, int) {
	var lat []time.Duration
	failed := 0
	client := &http.Client{Timeout: time.Minute}
	for range count {
		q := url.Values{"instance": {strconv.Itoa(rand.IntN(b.n))}, "duration": {captureDuration}}
		req, _ := http.NewRequest(http.MethodGet, b.httpURL+"/v1/apps/"+appGUID+"/capture?"+q.Encode(), nil)
		req.Header.Set("Authorization", "bearer "+token)
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			failed++
			continue
		}
		d := time.Since(start)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			failed++
			continue
		}
		lat = append(lat, d)
	}
	return lat, failed
}

func startHogs(n int) ([]*exec.Cmd, error) {
	var hogs []*exec.Cmd
	for range n {
		cmd := atNormalPriority("sh", "-c", "while :; do :; done")
		if err := cmd.Start(); err != nil {
			stopHogs(hogs)
			return nil, fmt.Errorf("start CPU hog: %w", err)
		}
		hogs = append(hogs, cmd)
	}
	return hogs, nil
}

// atNormalPriority is a command that runs at niceness 0, whatever this
// process's. scripts/bench-scale.sh runs the benchmark (its agents and
// the prober) at -10: the agents stand for cells, each with CPUs of its
// own, and must not be what the busy loops starve; the API and the busy
// loops, what the benchmark is about, share the machine as equals.
func atNormalPriority(name string, args ...string) *exec.Cmd {
	if own := niceness(); own != 0 {
		return exec.Command("nice", append([]string{"-n", strconv.Itoa(-own), name}, args...)...)
	}
	return exec.Command(name, args...)
}

// niceness is this process's nice value (0 when it cannot be read).
func niceness() int {
	stat, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0
	}
	// The fields after the command, which is in parentheses: nice is
	// the 19th field of the line, the 17th after the parenthesis.
	fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	if len(fields) < 17 {
		return 0
	}
	n, _ := strconv.Atoi(fields[16])
	return n
}

func stopHogs(hogs []*exec.Cmd) {
	for _, h := range hogs {
		_ = h.Process.Kill()
		_ = h.Wait()
	}
}

func percentile(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	return s[max(0, min(len(s)-1, i-1))]
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func tail(path string) string {
	data, _ := os.ReadFile(path)
	if len(data) > 4000 {
		data = data[len(data)-4000:]
	}
	return string(data)
}

// ownCPU is the CPU this process (the agents) has used.
func ownCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
