package capture

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/cloudfoundry/pcap-server-release/proxy/apimetrics"
	"github.com/cloudfoundry/pcap-server-release/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// script is what a fake agent does on its stream after the request.
type script func(t *testing.T, req *wire.CaptureRequest, r *wire.Reader, w *wire.Writer)

// fakeAgent plays one agent over net.Pipe.
type fakeAgent struct {
	t       *testing.T
	script  script
	version int                // 0: the newest
	bosh    *wire.BoshInstance // the hello's VM identity
	wg      sync.WaitGroup
	active  int
	mu      sync.Mutex
}

func (a *fakeAgent) Open(ctx context.Context) (net.Conn, error) {
	api, agent := net.Pipe()
	a.wg.Go(func() {
		defer agent.Close()
		r, w := wire.NewReader(agent), wire.NewWriter(agent)
		req, err := wire.Expect[wire.CaptureRequest](r)
		if err != nil {
			return
		}
		a.script(a.t, req, r, w)
	})
	return api, nil
}

func (a *fakeAgent) TryAcquire(int) bool          { a.mu.Lock(); a.active++; a.mu.Unlock(); return true }
func (a *fakeAgent) Release()                     { a.mu.Lock(); a.active--; a.mu.Unlock() }
func (a *fakeAgent) Speaks(v int) bool            { return a.version == 0 || v <= a.version }
func (a *fakeAgent) Identity() *wire.BoshInstance { return a.bosh }

type fakeAgents map[netip.Addr]*fakeAgent

func (f fakeAgents) Lookup(ip netip.Addr) (Agent, bool) {
	a, ok := f[ip]
	if !ok {
		return nil, false
	}
	return a, true
}

func agentsFor(t *testing.T, scripts ...script) (fakeAgents, []Target) {
	agents := fakeAgents{}
	var targets []Target
	for i, s := range scripts {
		ip := netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)})
		agents[ip] = &fakeAgent{t: t, script: s}
		targets = append(targets, AppInstance{AppGUID: "guid", AppName: "app", Index: i, CellIP: ip})
	}
	t.Cleanup(func() {
		for _, a := range agents {
			a.wg.Wait()
			if a.active != 0 {
				t.Errorf("agent slot not released: %d", a.active)
			}
		}
	})
	return agents, targets
}

func packetsFrame(w *wire.Writer, ts ...int64) error {
	var b wire.Batch
	for _, t := range ts {
		b.Append(t, 100, bytes.Repeat([]byte{byte(t)}, 60))
	}
	return w.WriteBatch(&b)
}

// waitStop reads until the API's Stop and returns its reason.
func waitStop(r *wire.Reader) wire.EndReason {
	s, err := wire.Expect[wire.Stop](r)
	if err != nil {
		return ""
	}
	return s.Reason
}

func request(targets []Target) Request {
	return Request{CaptureID: "c1", Targets: targets, Devices: []string{"eth0"}, Snaplen: 65535, Format: FormatPcap}
}

func newMetrics() (*apimetrics.Metrics, *prometheus.Registry) {
	reg := prometheus.NewRegistry()
	return apimetrics.New(reg), reg
}

func readPcap(t *testing.T, b []byte) []int64 {
	t.Helper()
	r, err := pcapgo.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	var ts []int64
	for {
		_, ci, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			return ts
		}
		if err != nil {
			t.Fatal(err)
		}
		ts = append(ts, ci.Timestamp.UnixNano())
	}
}

// readPcapng reads a pcapng file: its reader (for interfaces and
// statistics), and every packet's timestamp and interface.
func readPcapng(t *testing.T, b []byte) (*pcapgo.NgReader, []int64, []int) {
	t.Helper()
	r, err := pcapgo.NewNgReader(bytes.NewReader(b), pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatal(err)
	}
	var ts []int64
	var ifaces []int
	for {
		_, ci, err := r.ReadPacketData()
		if err != nil {
			break
		}
		ts = append(ts, ci.Timestamp.UnixNano())
		ifaces = append(ifaces, ci.InterfaceIndex)
	}
	return r, ts, ifaces
}

func noStop() <-chan wire.EndReason { return nil }

func TestSessionCountsPacketsAndDrops(t *testing.T) {
	agents, targets := agentsFor(t, func(t *testing.T, req *wire.CaptureRequest, r *wire.Reader, w *wire.Writer) {
		_ = w.WriteMessage(&wire.Started{LinkType: 1, Snaplen: req.Snaplen, Device: req.Device})
		_ = packetsFrame(w, 1, 2, 3)
		_ = w.WriteMessage(&wire.Stats{Counters: wire.Counters{Packets: 3, KernelDropped: 2, AgentDropped: 1}})
		_ = w.WriteMessage(&wire.End{Reason: wire.EndDuration, Stats: wire.Stats{Counters: wire.Counters{Packets: 3, KernelDropped: 2, InterfaceDropped: 1, AgentDropped: 5}}})
	})
	m, reg := newMetrics()
	sess, failed := Start(context.Background(), agents, request(targets), Options{BufferBytes: 1 << 20, Metrics: m})
	if sess == nil || len(failed) != 0 {
		t.Fatalf("start: %v", failed)
	}
	var out bytes.Buffer
	res := sess.Run(context.Background(), &out, func() error { return nil }, noStop())
	if res.Reason != wire.EndDuration || res.Packets != 3 || res.Bytes != int64(out.Len()) {
		t.Fatalf("result %+v", res)
	}
	if res.Dropped != (Drops{Kernel: 3, Agent: 5}) {
		t.Fatalf("drops %+v", res.Dropped)
	}
	if got := readPcap(t, out.Bytes()); len(got) != 3 {
		t.Fatalf("%d packets in the file", len(got))
	}
	for reason, want := range map[string]float64{"kernel": 3, "agent": 5, "api": 0} {
		if got := testutil.ToFloat64(m.Dropped.WithLabelValues(reason)); got != want {
			t.Errorf("dropped{%s} = %v, want %v", reason, got, want)
		}
	}
	if got := testutil.ToFloat64(m.StreamedPackets); got != 3 {
		t.Errorf("streamed packets %v", got)
	}
	if got := testutil.ToFloat64(m.StreamedBytes); got != float64(out.Len()) {
		t.Errorf("streamed bytes %v, body %d", got, out.Len())
	}
	if got := histogramCount(t, reg, "pcap_api_stream_open_duration_seconds", "started"); got != 1 {
		t.Errorf("stream opens observed: %d", got)
	}
}

// stallingWriter blocks every write after the first until released, as a
// client that stopped reading does.
type stallingWriter struct {
	bytes.Buffer
	writes  int
	stalled chan struct{} // closed when a write blocks
	release chan struct{}
}

func (w *stallingWriter) Write(p []byte) (int, error) {
	if w.writes++; w.writes > 1 {
		select {
		case <-w.stalled:
		default:
			close(w.stalled)
		}
		<-w.release
	}
	return w.Buffer.Write(p)
}

// While the client does not read, frames queue up to the buffer's budget;
// a frame beyond it is dropped whole and counted.
func TestSessionDropsBeyondItsBufferAndCountsThem(t *testing.T) {
	client := &stallingWriter{stalled: make(chan struct{}), release: make(chan struct{})}
	sent := make(chan struct{})
	agents, targets := agentsFor(t, func(t *testing.T, req *wire.CaptureRequest, r *wire.Reader, w *wire.Writer) {
		defer close(sent)
		_ = w.WriteMessage(&wire.Started{LinkType: 1, Snaplen: req.Snaplen})
		_ = packetsFrame(w, 1, 2, 3)
		<-client.stalled // the API is stuck writing the first frame
		_ = packetsFrame(w, 4, 5, 6, 7)
		_ = packetsFrame(w, 8, 9, 10, 11, 12)
		_ = w.WriteMessage(&wire.End{Reason: wire.EndDuration, Stats: wire.Stats{Counters: wire.Counters{Packets: 12}}})
	})
	m, _ := newMetrics()
	// Room for one frame's buffer.
	sess, _ := Start(context.Background(), agents, request(targets), Options{BufferBytes: classSize(0) + frameOverhead, Metrics: m})
	go func() {
		<-sent // net.Pipe: the API has read every frame
		close(client.release)
	}()
	res := sess.Run(context.Background(), client, func() error { return nil }, noStop())
	if res.Dropped.API != 5 || res.Packets != 7 {
		t.Fatalf("result %+v", res)
	}
	if got := testutil.ToFloat64(m.Dropped.WithLabelValues("api")); got != 5 {
		t.Fatalf("dropped{api} = %v", got)
	}
	if got := readPcap(t, client.Bytes()); !slices.Equal(got, []int64{1, 2, 3, 4, 5, 6, 7}) {
		t.Fatalf("file holds %v", got)
	}
}

// Whatever an agent sends, the API holds about buffer_bytes for a capture
// whose client does not read: frames count whole against the budget, so a
// small packet cannot keep a large frame alive beyond it.
func TestSessionMemoryStaysWithinItsBuffer(t *testing.T) {
	const budget = 16 << 20
	const frames = 150
	client := &stallingWriter{stalled: make(chan struct{}), release: make(chan struct{})}
	sent := make(chan struct{})
	big := make([]byte, wire.MaxSnaplen)
	agents, targets := agentsFor(t, func(t *testing.T, req *wire.CaptureRequest, r *wire.Reader, w *wire.Writer) {
		defer close(sent)
		_ = w.WriteMessage(&wire.Started{LinkType: 1, Snaplen: wire.MaxSnaplen})
		_ = packetsFrame(w, 0)
		<-client.stalled
		// Each frame: one small packet, then three of the largest size.
		for i := range frames {
			b := wire.NewBatch(wire.MaxPayload)
			b.Append(int64(i+1), 60, big[:60])
			for range 3 {
				b.Append(int64(i+1), len(big), big)
			}
			if err := w.WriteBatch(b); err != nil {
				return
			}
		}
		_ = w.WriteMessage(&wire.End{Reason: wire.EndDuration})
	})
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	sess, _ := Start(context.Background(), agents, request(targets), Options{BufferBytes: budget})
	measured := make(chan uint64, 1)
	go func() {
		<-sent // net.Pipe: the API has read every frame
		runtime.GC()
		var during runtime.MemStats
		runtime.ReadMemStats(&during)
		measured <- during.HeapAlloc
		close(client.release)
	}()
	res := sess.Run(context.Background(), client, func() error { return nil }, noStop())
	held := int64(<-measured) - int64(before.HeapAlloc)
	// The budget, plus the instance's buffer and the output being
	// written: a few MiB.
	if limit := int64(budget + 8<<20); held > limit {
		t.Fatalf("the API held %d MiB for the capture, budget %d MiB", held>>20, budget>>20)
	}
	if total := res.Packets + res.Dropped.API; total != 1+4*frames || res.Dropped.API == 0 {
		t.Fatalf("written %d + dropped %d, sent %d", res.Packets, res.Dropped.API, 1+4*frames)
	}
}

func TestSessionMergesInstancesIntoPcapng(t *testing.T) {
	send := func(ts ...int64) script {
		return func(t *testing.T, req *wire.CaptureRequest, r *wire.Reader, w *wire.Writer) {
			_ = w.WriteMessage(&wire.Started{LinkType: 1, Snaplen: req.Snaplen, Device: "eth0", Container: "h"})
			for _, x := range ts {
				_ = packetsFrame(w, x)
			}
			_ = w.WriteMessage(&wire.End{Reason: wire.EndDuration, Stats: wire.Stats{Counters: wire.Counters{Packets: uint64(len(ts)), AgentDropped: 1}}})
		}
	}
	agents, targets := agentsFor(t, send(10, 30, 50), send(20, 40, 60))
	req := request(targets)
	req.Format = FormatPcapng
	sess, _ := Start(context.Background(), agents, req, Options{BufferBytes: 1 << 20})
	var out bytes.Buffer
	res := sess.Run(context.Background(), &out, func() error { return nil }, noStop())
	if res.Packets != 6 {
		t.Fatalf("%+v", res)
	}
	r, ts, ifaces := readPcapng(t, out.Bytes())
	if want := []int64{10, 20, 30, 40, 50, 60}; !slices.Equal(ts, want) {
		t.Fatalf("timestamps %v, want %v", ts, want)
	}
	if r.NInterfaces() != 2 {
		t.Fatalf("%d interfaces", r.NInterfaces())
	}
	for i := range 2 {
		intf, _ := r.Interface(i)
		if want := "app/" + string(rune('0'+i)); intf.Name != want {
			t.Fatalf("interface %d named %q", i, intf.Name)
		}
		if intf.Statistics.PacketsDropped != 1 || intf.Statistics.PacketsReceived != 4 {
			t.Fatalf("interface %d statistics %+v", i, intf.Statistics)
		}
	}
	if want := []int{0, 1, 0, 1, 0, 1}; !equalInts(ifaces, want) {
		t.Fatalf("interfaces %v", ifaces)
	}
}

func TestStartReportsAgentErrorsWithStatus(t *testing.T) {
	refuse := func(code wire.ErrorCode) script {
		return func(t *testing.T, req *wire.CaptureRequest, r *wire.Reader, w *wire.Writer) {
			_ = w.WriteMessage(&wire.Error{Code: code, Message: "because " + string(code)})
		}
	}
	start := func(t *testing.T, req *wire.CaptureRequest, r *wire.Reader, w *wire.Writer) {
		_ = w.WriteMessage(&wire.Started{LinkType: 1, Snaplen: req.Snaplen})
		_ = w.WriteMessage(&wire.End{Reason: waitStop(r)})
	}
	agents, targets := agentsFor(t, refuse(wire.ErrBadFilter), start, refuse(wire.ErrContainerNotFound), refuse(wire.ErrLimit), refuse(wire.ErrGardenUnavailable))
	targets = append(targets, AppInstance{Index: 9, CellIP: netip.MustParseAddr("10.9.9.9")})
	sess, failed := Start(context.Background(), agents, request(targets), Options{BufferBytes: 1 << 20})
	if sess == nil || len(sess.Started()) != 1 || sess.Started()[0].Instance() != "1" {
		t.Fatal("instance 1 should have started")
	}
	want := map[string]int{"0": http.StatusBadRequest, "2": http.StatusNotFound, "3": http.StatusTooManyRequests, "4": http.StatusBadGateway, "9": http.StatusServiceUnavailable}
	if len(failed) != len(want) {
		t.Fatalf("failed %v", failed)
	}
	for _, f := range failed {
		if want[f.Instance] != f.Status {
			t.Errorf("instance %s: status %d, want %d (%s)", f.Instance, f.Status, want[f.Instance], f.Message)
		}
	}
	if h := FormatInstanceErrors(failed); !strings.Contains(h, "0: because bad_filter") || !strings.Contains(h, "9: no agent connected for cell 10.9.9.9") {
		t.Fatalf("header %q", h)
	}
	stop := make(chan wire.EndReason, 1)
	stop <- wire.EndAPIDraining
	res := sess.Run(context.Background(), io.Discard, func() error { return nil }, stop)
	if res.Reason != wire.EndAPIDraining {
		t.Fatalf("reason %s", res.Reason)
	}
}

// After Stop the agent drains: what it sends before End is still written.
func TestStopKeepsDrainedPackets(t *testing.T) {
	agents, targets := agentsFor(t, func(t *testing.T, req *wire.CaptureRequest, r *wire.Reader, w *wire.Writer) {
		_ = w.WriteMessage(&wire.Started{LinkType: 1, Snaplen: req.Snaplen})
		_ = packetsFrame(w, 1)
		reason := waitStop(r)
		_ = packetsFrame(w, 2, 3)
		_ = w.WriteMessage(&wire.End{Reason: reason})
	})
	req := request(targets)
	req.Duration = 50 * time.Millisecond
	sess, _ := Start(context.Background(), agents, req, Options{BufferBytes: 1 << 20})
	var out bytes.Buffer
	res := sess.Run(context.Background(), &out, func() error { return nil }, noStop())
	if res.Reason != wire.EndDuration || !slices.Equal(readPcap(t, out.Bytes()), []int64{1, 2, 3}) {
		t.Fatalf("reason %s, packets %v", res.Reason, readPcap(t, out.Bytes()))
	}
}

func TestMaxBytesKeepsWholeRecords(t *testing.T) {
	agents, targets := agentsFor(t, func(t *testing.T, req *wire.CaptureRequest, r *wire.Reader, w *wire.Writer) {
		_ = w.WriteMessage(&wire.Started{LinkType: 1, Snaplen: req.Snaplen})
		_ = packetsFrame(w, 1, 2, 3, 4, 5)
		_ = w.WriteMessage(&wire.End{Reason: waitStop(r)})
	})
	req := request(targets)
	req.MaxBytes = 24 + 2*(16+60) + 10 // header, two packets and a bit
	sess, _ := Start(context.Background(), agents, req, Options{BufferBytes: 1 << 20})
	var out bytes.Buffer
	res := sess.Run(context.Background(), &out, func() error { return nil }, noStop())
	if res.Reason != wire.EndMaxBytes || int64(out.Len()) > req.MaxBytes || len(readPcap(t, out.Bytes())) != 2 {
		t.Fatalf("reason %s, %d bytes", res.Reason, out.Len())
	}
}

// In pcapng the statistics blocks count too: with them written every
// 10 ms, the file still ends within max_bytes, closed by the last ones.
func TestMaxBytesCountsStatisticsInPcapng(t *testing.T) {
	agents, targets := agentsFor(t, func(t *testing.T, req *wire.CaptureRequest, r *wire.Reader, w *wire.Writer) {
		_ = w.WriteMessage(&wire.Started{LinkType: 1, Snaplen: req.Snaplen})
		for i := range int64(200) {
			if packetsFrame(w, i) != nil {
				break
			}
			time.Sleep(2 * time.Millisecond) // a trickle, so that statistics interleave
		}
		_ = w.WriteMessage(&wire.End{Reason: waitStop(r)})
	})
	req := request(targets)
	req.Format = FormatPcapng
	req.MaxBytes = 2000
	sess, _ := Start(context.Background(), agents, req, Options{BufferBytes: 1 << 20, StatsInterval: 10 * time.Millisecond})
	var out bytes.Buffer
	res := sess.Run(context.Background(), &out, func() error { return nil }, noStop())
	if res.Reason != wire.EndMaxBytes || int64(out.Len()) > req.MaxBytes || res.Bytes != int64(out.Len()) {
		t.Fatalf("reason %s, %d bytes written, Pcap-Bytes %d, max %d", res.Reason, out.Len(), res.Bytes, req.MaxBytes)
	}
	// The last block is the closing statistics.
	if b := out.Bytes(); len(b) < isbSize || b[len(b)-isbSize] != 5 {
		t.Fatal("the file does not end with interface statistics")
	}
}

// isbSize is what appendStats writes.
func TestStatisticsBlockSize(t *testing.T) {
	o, err := newPcapngOutput([]ngInterface{{name: "a/0", linkType: 1, snaplen: 65535}})
	if err != nil {
		t.Fatal(err)
	}
	before := o.pending()
	if err := o.appendStats(0, ifaceStats{delivered: 1 << 40, dropped: 1 << 40, start: time.Now(), end: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if got := o.pending() - before; got != isbSize {
		t.Fatalf("a statistics block takes %d bytes, isbSize says %d", got, isbSize)
	}
}

func TestClientGoneStopsAgents(t *testing.T) {
	stopped := make(chan wire.EndReason, 1)
	agents, targets := agentsFor(t, func(t *testing.T, req *wire.CaptureRequest, r *wire.Reader, w *wire.Writer) {
		_ = w.WriteMessage(&wire.Started{LinkType: 1, Snaplen: req.Snaplen})
		_ = packetsFrame(w, 1)
		reason := waitStop(r)
		stopped <- reason
		_ = w.WriteMessage(&wire.End{Reason: reason})
	})
	sess, _ := Start(context.Background(), agents, request(targets), Options{BufferBytes: 1 << 20})
	res := sess.Run(context.Background(), failingWriter{}, func() error { return nil }, noStop())
	if res.Reason != wire.EndClientGone || <-stopped != wire.EndClientGone {
		t.Fatalf("reason %s", res.Reason)
	}
}

func TestMalformedFrameEndsTheInstanceNotTheFile(t *testing.T) {
	agents, targets := agentsFor(t, func(t *testing.T, req *wire.CaptureRequest, r *wire.Reader, w *wire.Writer) {
		_ = w.WriteMessage(&wire.Started{LinkType: 1, Snaplen: req.Snaplen})
		_ = packetsFrame(w, 1)
		_ = w.WriteFrame(wire.TypePackets, []byte{1, 2, 3})
	})
	sess, _ := Start(context.Background(), agents, request(targets), Options{BufferBytes: 1 << 20})
	var out bytes.Buffer
	res := sess.Run(context.Background(), &out, func() error { return nil }, noStop())
	if res.Reason != wire.EndError || !strings.Contains(res.Instances[0].Message, "malformed") {
		t.Fatalf("%+v", res)
	}
	if got := readPcap(t, out.Bytes()); len(got) != 1 {
		t.Fatalf("%d packets", len(got))
	}
}

func TestPcapRefusesASecondLinkType(t *testing.T) {
	started := func(link int) script {
		return func(t *testing.T, req *wire.CaptureRequest, r *wire.Reader, w *wire.Writer) {
			_ = w.WriteMessage(&wire.Started{LinkType: link, Snaplen: req.Snaplen})
			reason := waitStop(r)
			_ = w.WriteMessage(&wire.End{Reason: reason})
		}
	}
	agents, targets := agentsFor(t, started(1), started(276))
	sess, failed := Start(context.Background(), agents, request(targets), Options{BufferBytes: 1 << 20})
	if len(failed) != 1 || failed[0].Instance != "1" || failed[0].Status != http.StatusBadRequest || !strings.Contains(failed[0].Message, "pcapng") {
		t.Fatalf("failed %v", failed)
	}
	stop := make(chan wire.EndReason, 1)
	stop <- wire.EndRequested
	sess.Run(context.Background(), io.Discard, func() error { return nil }, stop)
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("client went away") }

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// histogramCount is the sample count of the histogram name{result=result}.
func histogramCount(t *testing.T, reg *prometheus.Registry, name, result string) uint64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return m.GetHistogram().GetSampleCount()
				}
			}
		}
	}
	return 0
}

// pcapng streams carry interface statistics while they run, so that the
// CLI can show drops live.
func TestPcapngCarriesPeriodicStatistics(t *testing.T) {
	agents, targets := agentsFor(t, func(t *testing.T, req *wire.CaptureRequest, r *wire.Reader, w *wire.Writer) {
		_ = w.WriteMessage(&wire.Started{LinkType: 1, Snaplen: req.Snaplen})
		_ = packetsFrame(w, 1)
		_ = w.WriteMessage(&wire.Stats{Counters: wire.Counters{Packets: 1, AgentDropped: 4}})
		_ = w.WriteMessage(&wire.End{Reason: waitStop(r), Stats: wire.Stats{Counters: wire.Counters{Packets: 1, AgentDropped: 4}}})
	})
	req := request(targets)
	req.Format = FormatPcapng
	req.Duration = 300 * time.Millisecond
	sess, _ := Start(context.Background(), agents, req, Options{BufferBytes: 1 << 20, StatsInterval: 20 * time.Millisecond})
	var out bytes.Buffer
	sess.Run(context.Background(), &out, func() error { return nil }, noStop())
	isbs := 0
	for b := out.Bytes(); len(b) >= 12; {
		n := int(uint32(b[4]) | uint32(b[5])<<8 | uint32(b[6])<<16 | uint32(b[7])<<24)
		if b[0] == 5 && b[1] == 0 && b[2] == 0 && b[3] == 0 {
			isbs++
		}
		b = b[n:]
	}
	if isbs < 3 {
		t.Fatalf("%d interface statistics blocks in a 300ms capture with a 20ms interval", isbs)
	}
	// Wireshark's reader takes statistics blocks anywhere in the file.
	if got := tsharkFrames(t, out.Bytes()); got != "1" {
		t.Fatalf("tshark reads frames %q", got)
	}
}

// tsharkFrames has tshark read a capture file and returns the frame
// numbers it found, one a line; tshark's complaints fail the test.
func tsharkFrames(t *testing.T, b []byte) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "capture.pcapng")
	if err := os.WriteFile(file, b, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("tshark", "-r", file, "-T", "fields", "-e", "frame.number")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	got, err := cmd.Output()
	if err != nil || strings.Contains(stderr.String(), "rror") {
		t.Fatalf("tshark: %v %q %s", err, got, stderr.String())
	}
	return strings.TrimSpace(string(got))
}

func TestCancelledRequestIsClientGone(t *testing.T) {
	agents, targets := agentsFor(t, func(t *testing.T, req *wire.CaptureRequest, r *wire.Reader, w *wire.Writer) {
		_ = w.WriteMessage(&wire.Started{LinkType: 1, Snaplen: req.Snaplen})
		reason := waitStop(r)
		// A slow drain: the API must wait for it without spinning.
		time.Sleep(200 * time.Millisecond)
		_ = w.WriteMessage(&wire.End{Reason: reason})
	})
	sess, _ := Start(context.Background(), agents, request(targets), Options{BufferBytes: 1 << 20})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res := sess.Run(ctx, io.Discard, func() error { return nil }, noStop())
	if res.Reason != wire.EndClientGone || res.Instances[0].Reason != wire.EndClientGone {
		t.Fatalf("%+v", res)
	}
}

// An agent's end reason outside the contract becomes error, and its long
// message is clipped before it reaches headers, logs and metrics.
func TestAgentReasonsAndMessagesAreChecked(t *testing.T) {
	agents, targets := agentsFor(t, func(t *testing.T, req *wire.CaptureRequest, r *wire.Reader, w *wire.Writer) {
		_ = w.WriteMessage(&wire.Started{LinkType: 1, Snaplen: req.Snaplen})
		// Written raw: the wire package would clip the message itself.
		_ = w.WriteFrame(wire.TypeEnd, fmt.Appendf(nil, `{"reason":"bogus\nreason","message":%q}`, strings.Repeat("x\n", 5000)))
	})
	m, _ := newMetrics()
	sess, _ := Start(context.Background(), agents, request(targets), Options{BufferBytes: 1 << 20, Metrics: m})
	res := sess.Run(context.Background(), io.Discard, func() error { return nil }, noStop())
	if res.Reason != wire.EndError || len(res.Instances[0].Message) > wire.MaxMessage+3 || strings.Contains(res.Instances[0].Message, "\n") {
		t.Fatalf("reason %q, message of %d bytes", res.Reason, len(res.Instances[0].Message))
	}
}

// In classic pcap a long run of one instance's records goes out from its
// frame, headers rewritten where they are, and short runs (instances
// taking turns) through the output buffer: either way the file is,
// byte for byte, what pcapgo writes for the same packets in timestamp
// order, and what the session reports it wrote.
func TestPcapRecordsFromTheFrameAreTheFilesRecords(t *testing.T) {
	var long, alternateA, alternateB []int64
	for k := range 1200 { // 1200 records of 76 bytes: beyond directWrite
		long = append(long, 1_000_000+int64(k))
	}
	for k := range 40 {
		alternateA = append(alternateA, 3_000_000+2*int64(k))
		alternateB = append(alternateB, 3_000_000+2*int64(k)+1)
	}
	agents, targets := agentsFor(t,
		func(t *testing.T, req *wire.CaptureRequest, r *wire.Reader, w *wire.Writer) {
			_ = w.WriteMessage(&wire.Started{LinkType: 1, Snaplen: req.Snaplen, Device: req.Device})
			_ = packetsFrame(w, long...)
			_ = packetsFrame(w, alternateA...)
			_ = w.WriteMessage(&wire.End{Reason: wire.EndDuration, Stats: wire.Stats{Counters: wire.Counters{Packets: uint64(len(long) + len(alternateA))}}})
		},
		func(t *testing.T, req *wire.CaptureRequest, r *wire.Reader, w *wire.Writer) {
			_ = w.WriteMessage(&wire.Started{LinkType: 1, Snaplen: req.Snaplen, Device: req.Device})
			_ = packetsFrame(w, 1, 2, 3)
			_ = packetsFrame(w, alternateB...)
			_ = packetsFrame(w, 5_000_000, 5_000_001)
			_ = w.WriteMessage(&wire.End{Reason: wire.EndDuration, Stats: wire.Stats{Counters: wire.Counters{Packets: 3 + uint64(len(alternateB)) + 2}}})
		})
	sess, failed := Start(context.Background(), agents, request(targets), Options{BufferBytes: 4 << 20})
	if sess == nil || len(failed) != 0 {
		t.Fatalf("start: %v", failed)
	}
	var out bytes.Buffer
	res := sess.Run(context.Background(), &out, func() error { return nil }, noStop())

	all := slices.Concat([]int64{1, 2, 3}, long, alternateA, alternateB, []int64{5_000_000, 5_000_001})
	slices.Sort(all)
	var want bytes.Buffer
	pw := pcapgo.NewWriterNanos(&want)
	if err := pw.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	for _, ts := range all {
		ci := gopacket.CaptureInfo{Timestamp: time.Unix(0, ts), CaptureLength: 60, Length: 100}
		if err := pw.WritePacket(ci, bytes.Repeat([]byte{byte(ts)}, 60)); err != nil {
			t.Fatal(err)
		}
	}
	if res.Packets != uint64(len(all)) || res.Bytes != int64(out.Len()) {
		t.Errorf("result %+v for %d packets and a file of %d bytes", res, len(all), out.Len())
	}
	if !bytes.Equal(out.Bytes(), want.Bytes()) {
		got := out.Bytes()
		i := 0
		for i < min(len(got), len(want.Bytes())) && got[i] == want.Bytes()[i] {
			i++
		}
		t.Fatalf("the file differs from pcapgo's at byte %d of %d (want %d bytes)", i, len(got), want.Len())
	}
}
