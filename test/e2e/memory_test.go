package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gopacket/gopacket/pcapgo"
	"gopkg.in/yaml.v3"

	agenttunnel "github.com/cloudfoundry/pcap-server-release/cellagent/tunnel"
	"github.com/cloudfoundry/pcap-server-release/proxy/apiconfig"
	"github.com/cloudfoundry/pcap-server-release/test/procmem"
	"github.com/cloudfoundry/pcap-server-release/wire"
)

// The memory test's capture: 200 instances on 4 agents, a 4 MiB budget.
const (
	memInstances = 200
	memAgents    = 4
	memBudget    = 4 << 20
	// memLimit is what the API process may add to its RSS for the
	// capture beyond the budget, at its peak (VmHWM): what the capture
	// holds besides its budget (16 KiB per instance, 256 KiB unread
	// in the tunnel), the output, and above all the garbage the collector lets
	// pile up until it runs: the heap grows to twice what is live, and
	// the flood allocates yamux's buffers as fast as the API reads.
	// Measured: 40-49 MiB (docs/RELIABILITY.md); before, over 1 GiB.
	memLimit = 64 << 20
	// memLate is how long one instance takes to answer: the response,
	// and so the writing, waits for it while the others send.
	memLate = time.Second
	// memStall is how long the client reads nothing after the status
	// line.
	memStall = 4 * time.Second
)

// TestAPIMemoryStaysWithinItsBudget runs a real pcap-server-api process
// with limits.buffer_bytes 4 MiB and one capture of 200 instances whose
// agents send from their Started on as fast as the API lets them: most
// send full batches of 1514-byte packets, some batches of the largest
// frame, some endless statistics and unknown frames, some a frame beyond
// the limits; one answers a second late (the response waits for it), and
// the client reads nothing for 4 s after the status line. The API's peak
// RSS stays within the budget plus memLimit, and every packet the agents
// sent is in the file or counted as an api drop, in the trailers and in
// the pcapng statistics.
func TestAPIMemoryStaysWithinItsBudget(t *testing.T) {
	p := newPKI(t)
	var targets []apiconfig.DevTarget
	for i := range memInstances {
		targets = append(targets, apiconfig.DevTarget{AppGUID: appGUID, AppName: appName, Index: i, CellIP: memCell(i % memAgents)})
	}
	api := startAPIProcess(t, p, targets, func(c *apiconfig.Config) {
		c.Limits.BufferBytes = memBudget
		c.Limits.CapturesPerAgent = memInstances / memAgents
	})

	ctx, cancel := context.WithCancel(context.Background())
	var agents sync.WaitGroup
	defer agents.Wait()
	defer cancel()
	sent := &sentCounter{}
	tlsConf := p.agentTLS(t)
	for a := range memAgents {
		ip := memCell(a)
		c := agenttunnel.New(agenttunnel.Config{
			Addresses:       []string{api.tunnel},
			TLS:             tlsConf,
			ResolveInterval: time.Hour,
			Hello:           wire.Hello{AgentID: "memory-agent-" + ip, CellIPs: []string{ip}, AgentVersion: "test", MaxCaptures: memInstances},
			Handle:          func(ctx context.Context, s net.Conn) { hostileAgent(ctx, s, sent) },
			LocalAddr:       &net.TCPAddr{IP: net.ParseIP(ip)},
		})
		agents.Go(func() { _ = c.Run(ctx) })
	}
	api.waitAgents(t, memAgents)
	base := api.memory(t)
	t.Logf("API RSS with %d agents connected: %.1f MiB", memAgents, mib(base.RSS))

	// The watch ends the test early, killing the API, if its RSS passes
	// the limit: the code this test guards against took gigabytes.
	limit := base.RSS + memBudget + memLimit
	watchDone := make(chan struct{})
	var over atomic.Int64
	go func() {
		defer close(watchDone)
		for api.running() {
			if m, err := procmem.Read(api.cmd.Process.Pid); err == nil && m.RSS > limit {
				over.Store(m.RSS)
				api.kill()
				return
			}
			time.Sleep(20 * time.Millisecond) // sampling another process's RSS: nothing to await
		}
	}()

	q := url.Values{"duration": {"3s"}, "format": {"pcapng"}}
	req, err := http.NewRequest(http.MethodGet, api.url+"/v1/apps/"+appGUID+"/capture?"+q.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "bearer "+devToken)
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	defer client.CloseIdleConnections()
	started := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		if rss := over.Load(); rss > 0 {
			t.Fatalf("the API's RSS reached %.1f MiB before the status line, %.1f MiB over its %.1f MiB at the start: limit %.1f MiB beyond the budget",
				mib(rss), mib(rss-base.RSS), mib(base.RSS), mib(memBudget+memLimit))
		}
		t.Fatal(err)
	}
	defer resp.Body.Close()
	t.Logf("status %d after %s; instance errors: %q", resp.StatusCode, time.Since(started).Round(time.Millisecond), resp.Header.Get("Pcap-Instance-Errors"))
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Pcap-Instance-Errors") != "" {
		t.Fatalf("status %d, instance errors %q", resp.StatusCode, resp.Header.Get("Pcap-Instance-Errors"))
	}
	stall := time.NewTimer(memStall)
	select {
	case <-stall.C:
	case <-watchDone:
	}
	file := filepath.Join(t.TempDir(), "memory.pcapng")
	body, err := io.ReadAll(resp.Body)
	if rss := over.Load(); rss > 0 {
		t.Fatalf("the API's RSS reached %.1f MiB, %.1f MiB over its %.1f MiB at the start: limit %.1f MiB beyond the budget",
			mib(rss), mib(rss-base.RSS), mib(base.RSS), mib(memBudget+memLimit))
	}
	if err != nil {
		t.Fatal(err)
	}
	peak := api.memory(t)
	t.Logf("API RSS at its peak %.1f MiB: %.1f MiB over the start, budget %.1f MiB; %d bytes streamed",
		mib(peak.Peak), mib(peak.Peak-base.RSS), mib(memBudget), len(body))
	if grown := peak.Peak - base.RSS; grown > memBudget+memLimit {
		t.Fatalf("the API's RSS grew by %.1f MiB for a capture with a budget of %.1f MiB: limit %.1f MiB beyond it", mib(grown), mib(memBudget), mib(memLimit))
	}
	if err := os.WriteFile(file, body, 0o644); err != nil {
		t.Fatal(err)
	}

	// Every packet sent is written or counted.
	tr := resp.Trailer
	packets, _ := strconv.ParseUint(tr.Get("Pcap-Packets"), 10, 64)
	var kernel, agent, apiDrops uint64
	if _, err := fmt.Sscanf(tr.Get("Pcap-Dropped-Detail"), "kernel=%d agent=%d api=%d", &kernel, &agent, &apiDrops); err != nil {
		t.Fatalf("Pcap-Dropped-Detail %q: %v", tr.Get("Pcap-Dropped-Detail"), err)
	}
	total := sent.packets.Load()
	t.Logf("agents sent %d packets (%d bytes of batches); written %d, dropped by the API %d; end %s",
		total, sent.bytes.Load(), packets, apiDrops, tr.Get("Pcap-End-Reason"))
	if tr.Get("Pcap-End-Reason") != "duration" || kernel != 0 || agent != 0 || apiDrops == 0 || packets+apiDrops != total {
		t.Fatalf("trailers %v: written %d + api drops %d, sent %d", tr, packets, apiDrops, total)
	}
	if rows := tshark(t, file, "frame.number"); uint64(len(rows)) != packets {
		t.Fatalf("tshark reads %d packets, Pcap-Packets says %d", len(rows), packets)
	}
	ng, err := pcapgo.NewNgReader(strings.NewReader(string(body)), pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, _, err := ng.ReadPacketData(); err != nil {
			break
		}
	}
	var isbDropped uint64
	for i := range ng.NInterfaces() {
		intf, _ := ng.Interface(i)
		isbDropped += intf.Statistics.PacketsDropped
	}
	if ng.NInterfaces() != memInstances || isbDropped != apiDrops {
		t.Fatalf("%d interfaces, their statistics count %d drops; the trailer %d", ng.NInterfaces(), isbDropped, apiDrops)
	}
}

func memCell(a int) string { return fmt.Sprintf("127.3.0.%d", a+1) }

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// sentCounter counts what the agents sent in packet batches that went out
// whole before their End.
type sentCounter struct{ packets, bytes atomic.Uint64 }

// hostileAgent plays the agent's side of a capture stream, in the way of
// its instance index: every one but a few sends as fast as the API's
// window lets it from its Started on, until the API's Stop.
func hostileAgent(ctx context.Context, s net.Conn, sent *sentCounter) {
	stop := context.AfterFunc(ctx, func() { _ = s.Close() })
	defer stop()
	r, w := wire.NewReader(s), wire.NewWriter(s)
	req, err := wire.Expect[wire.CaptureRequest](r)
	if err != nil {
		return
	}
	if req.Index == 0 {
		// The late one: the status line waits for it.
		select {
		case <-time.After(memLate):
		case <-ctx.Done():
			return
		}
	}
	if err := w.WriteMessage(&wire.Started{LinkType: 1, Snaplen: req.Snaplen, Device: req.Device, Container: "memory"}); err != nil {
		return
	}
	switch req.Index % 20 {
	case 3:
		// A control frame beyond wire.MaxControlPayload: the API ends the
		// stream without reading it.
		_ = w.WriteFrame(wire.TypeStats, make([]byte, wire.MaxControlPayload+1))
		_, _ = io.Copy(io.Discard, s)
		return
	case 4:
		// A header beyond wire.MaxPayload.
		_, _ = s.Write([]byte{byte(wire.TypePackets), 0xff, 0xff, 0xff, 0xff})
		_, _ = io.Copy(io.Discard, s)
		return
	}
	stopped := make(chan wire.EndReason, 1)
	go func() {
		st, err := wire.Expect[wire.Stop](r)
		if err != nil {
			stopped <- wire.EndAgentLost
			return
		}
		stopped <- st.Reason
	}()
	batch, count := memBatch(req.Index)
	pad := strings.Repeat("x", wire.MaxControlPayload-200)
	var packets uint64
	for {
		select {
		case reason := <-stopped:
			_ = w.WriteMessage(&wire.End{Reason: reason, Stats: wire.Stats{Counters: wire.Counters{Packets: packets}}})
			_ = s.Close()
			return
		default:
		}
		if req.Index%20 == 2 {
			// Endless statistics, as large as they may be, and frames of
			// a type the API does not know.
			if w.WriteFrame(wire.TypeStats, fmt.Appendf(nil, `{"packets":0,"pad":%q}`, pad)) != nil ||
				w.WriteFrame(wire.Type(77), make([]byte, wire.MaxPayload)) != nil {
				return
			}
			continue
		}
		if w.WriteBatch(batch) != nil {
			return
		}
		packets += uint64(count)
		sent.packets.Add(uint64(count))
		sent.bytes.Add(uint64(batch.Size()))
	}
}

// memBatch is what instance i sends again and again: a batch of the
// largest frame for one in twenty, else a 128 KiB batch of 1514-byte
// packets, as the agent's batches are.
func memBatch(i int) (*wire.Batch, int) {
	size, limit := 1514, 128<<10
	if i%20 == 1 {
		size, limit = wire.MaxSnaplen, wire.MaxPayload
	}
	b := wire.NewBatch(limit)
	data := make([]byte, size)
	for b.Size()+wire.RecordHeaderSize+size <= limit {
		b.Append(time.Now().UnixNano(), size, data)
	}
	return b, b.Count()
}

// agentTLS is the agents' client configuration, for agents run by the
// test itself.
func (p *pki) agentTLS(t testing.TB) *tls.Config {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(p.agentCert, p.agentKey)
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(p.ca)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatalf("no certificate in %s", p.ca)
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool, ServerName: "pcap-server-api.service.cf.internal", Certificates: []tls.Certificate{cert}}
}

// apiProcess is the API binary running in a process of its own, so that
// its memory is its own.
type apiProcess struct {
	cmd          *exec.Cmd
	url, tunnel  string
	done         chan struct{}
	killOnce     sync.Once
	readyClients *http.Client
}

func startAPIProcess(t *testing.T, p *pki, targets []apiconfig.DevTarget, mutate func(*apiconfig.Config)) *apiProcess {
	t.Helper()
	cfg := apiTestConfig(t, p, targets, func(cfg *apiconfig.Config) {
		cfg.ID = "pcap-server-api/memory"
		cfg.LogLevel = "info"
		mutate(cfg)
	})
	data, err := yaml.Marshal(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "api.yml")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary(t, "pcap-server-api"), "-config", path)
	cmd.Stdout = t.Output()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	a := &apiProcess{cmd: cmd, done: make(chan struct{}), readyClients: &http.Client{Timeout: 10 * time.Second}}
	addrs := make(chan [2]string, 1)
	go func() {
		defer close(a.done)
		// Wait only once the log is read to its end: it closes the pipe.
		defer func() { _ = cmd.Wait() }()
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			var rec struct{ Msg, Listen, Tunnel string }
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "started" {
				addrs <- [2]string{rec.Listen, rec.Tunnel}
			}
			if !strings.Contains(line, `"level":"DEBUG"`) {
				fmt.Fprintln(t.Output(), line)
			}
		}
	}()
	t.Cleanup(func() {
		a.kill()
		<-a.done
	})
	select {
	case got := <-addrs:
		a.url, a.tunnel = "http://"+got[0], got[1]
	case <-a.done:
		t.Fatal("the API exited before it started")
	case <-time.After(30 * time.Second):
		t.Fatal("the API did not say it started within 30s")
	}
	return a
}

func (a *apiProcess) running() bool {
	select {
	case <-a.done:
		return false
	default:
		return true
	}
}

func (a *apiProcess) kill() { a.killOnce.Do(func() { _ = a.cmd.Process.Kill() }) }

// waitAgents waits until /readyz counts n agents.
func (a *apiProcess) waitAgents(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := a.readyClients.Get(a.url + "/readyz")
		if err == nil {
			var ready struct{ Agents int }
			_ = json.NewDecoder(resp.Body).Decode(&ready)
			resp.Body.Close()
			if ready.Agents == n {
				return
			}
		}
		time.Sleep(20 * time.Millisecond) // polling another process's state
	}
	t.Fatalf("fewer than %d agents connected within 30s", n)
}

func (a *apiProcess) memory(t *testing.T) procmem.Usage {
	t.Helper()
	m, err := procmem.Read(a.cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	return m
}
