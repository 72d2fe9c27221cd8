package capture

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/cloudfoundry/pcap-server-release/wire"
)

// replayConn is an agent's side of a stream played back from memory: the
// frames an agent would send, as fast as the API reads them. What the API
// writes is discarded.
type replayConn struct {
	net.Conn // nil: only the methods below are used
	r        *bytes.Reader
}

func (c *replayConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c *replayConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c *replayConn) Close() error                     { return nil }
func (c *replayConn) SetDeadline(time.Time) error      { return nil }
func (c *replayConn) SetReadDeadline(time.Time) error  { return nil }
func (c *replayConn) SetWriteDeadline(time.Time) error { return nil }

// replayAgent opens streams that replay one recorded capture.
type replayAgent struct{ stream []byte }

func (a *replayAgent) Open(context.Context) (net.Conn, error) {
	return &replayConn{r: bytes.NewReader(a.stream)}, nil
}
func (a *replayAgent) TryAcquire(int) bool          { return true }
func (a *replayAgent) Release()                     {}
func (a *replayAgent) Speaks(int) bool              { return true }
func (a *replayAgent) Identity() *wire.BoshInstance { return nil }

type replayAgents map[netip.Addr]*replayAgent

func (r replayAgents) Lookup(ip netip.Addr) (Agent, bool) {
	a, ok := r[ip]
	return a, ok
}

// recordedStream is what an agent sends for a capture of n packets of
// size bytes each: Started, Packets frames of 128 KiB, End. Instance i's
// timestamps interleave with the others'.
func recordedStream(b *testing.B, n, size, i, instances int) []byte {
	var buf bytes.Buffer
	w := wire.NewWriter(&buf)
	if err := w.WriteMessage(&wire.Started{LinkType: 1, Snaplen: 65535, Device: "eth0"}); err != nil {
		b.Fatal(err)
	}
	data := make([]byte, size)
	batch := wire.NewBatch(128<<10 + 16 + size)
	for k := range n {
		if batch.Size()+16+size > 128<<10 {
			if err := w.WriteBatch(batch); err != nil {
				b.Fatal(err)
			}
			batch.Reset()
		}
		batch.Append(int64(1_700_000_000_000_000_000+k*instances+i), size, data)
	}
	if err := w.WriteBatch(batch); err != nil {
		b.Fatal(err)
	}
	if err := w.WriteMessage(&wire.End{Reason: wire.EndDuration, Stats: wire.Stats{Counters: wire.Counters{Packets: uint64(n)}}}); err != nil {
		b.Fatal(err)
	}
	return buf.Bytes()
}

// recordedDevicesStream is what an agent sends for a capture of n
// packets of size bytes on each of devices devices: Started with every
// device, DevicePackets frames of 128 KiB taking turns, End. The devices'
// timestamps interleave.
func recordedDevicesStream(b *testing.B, n, size, devices int) []byte {
	var buf bytes.Buffer
	w := wire.NewWriter(&buf)
	started := &wire.Started{LinkType: 1, Snaplen: 65535, Device: "eth0"}
	for d := range devices {
		started.Devices = append(started.Devices, wire.DeviceStart{Device: fmt.Sprintf("eth%d", d), LinkType: 1})
	}
	if err := w.WriteMessage(started); err != nil {
		b.Fatal(err)
	}
	data := make([]byte, size)
	batches := make([]*wire.Batch, devices)
	for d := range batches {
		batches[d] = wire.NewDeviceBatch(d, 128<<10+16+size)
	}
	for k := range n {
		for d, batch := range batches {
			if batch.Size()+16+size > 128<<10 {
				if err := w.WriteBatch(batch); err != nil {
					b.Fatal(err)
				}
				batch.Reset()
			}
			batch.Append(int64(1_700_000_000_000_000_000+k*devices+d), size, data)
		}
	}
	for _, batch := range batches {
		if err := w.WriteBatch(batch); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.WriteMessage(&wire.End{Reason: wire.EndDuration, Stats: wire.Stats{Counters: wire.Counters{Packets: uint64(n * devices)}}}); err != nil {
		b.Fatal(err)
	}
	return buf.Bytes()
}

// BenchmarkSession measures the API's work per packet: reading the
// agents' frames, merging instances and writing the file, with the
// transport taken away (agents replay from memory, the client is
// io.Discard). Baseline (copy): reading the same frames into a buffer.
//
//	go test -run '^$' -bench Session ./proxy/capture
func BenchmarkSession(b *testing.B) {
	const packets = 200000
	for _, instances := range []int{1, 4, 16} {
		agents := replayAgents{}
		var targets []Target
		var all int
		for i := range instances {
			ip := netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)})
			agents[ip] = &replayAgent{stream: recordedStream(b, packets/instances, 60, i, instances)}
			all += len(agents[ip].stream)
			targets = append(targets, AppInstance{AppGUID: "g", AppName: "app", Index: i, CellIP: ip})
		}
		for _, format := range []Format{FormatPcap, FormatPcapng} {
			b.Run(fmt.Sprintf("%s/instances=%d", format, instances), func(b *testing.B) {
				req := request(targets)
				req.Format = format
				benchSession(b, agents, req, packets)
			})
		}
		if instances == 1 {
			// One instance, two devices: two sources on one stream.
			devAgents := replayAgents{targets[0].(AppInstance).CellIP: &replayAgent{stream: recordedDevicesStream(b, packets/2, 60, 2)}}
			b.Run("pcapng/instances=1/devices=2", func(b *testing.B) {
				req := request(targets)
				req.Devices = []string{"eth0", "eth1"}
				req.Format = FormatPcapng
				benchSession(b, devAgents, req, packets)
			})
		}
		b.Run(fmt.Sprintf("copy/instances=%d", instances), func(b *testing.B) {
			buf := make([]byte, 128<<10)
			for b.Loop() {
				for _, a := range agents {
					_, _ = io.CopyBuffer(struct{ io.Writer }{io.Discard}, struct{ io.Reader }{bytes.NewReader(a.stream)}, buf)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*packets), "ns/packet")
		})
	}
}

// BenchmarkSessionBulk is BenchmarkSession at full snaplen: one
// instance's frames of 8 KiB packets (bulk TCP), in both formats; the
// baseline (copy) reads the same frames into a buffer.
//
//	go test -run '^$' -bench SessionBulk ./proxy/capture
func BenchmarkSessionBulk(b *testing.B) {
	const packets, size = 20000, 8192
	ip := netip.AddrFrom4([4]byte{10, 0, 0, 1})
	agents := replayAgents{ip: &replayAgent{stream: recordedStream(b, packets, size, 0, 1)}}
	targets := []Target{AppInstance{AppGUID: "g", AppName: "app", CellIP: ip}}
	for _, format := range []Format{FormatPcap, FormatPcapng} {
		b.Run(string(format), func(b *testing.B) {
			b.SetBytes(packets * size)
			req := request(targets)
			req.Format = format
			benchSession(b, agents, req, packets)
		})
	}
	b.Run("copy", func(b *testing.B) {
		b.SetBytes(packets * size)
		buf := make([]byte, 128<<10)
		for b.Loop() {
			_, _ = io.CopyBuffer(struct{ io.Writer }{io.Discard}, struct{ io.Reader }{bytes.NewReader(agents[ip].stream)}, buf)
		}
	})
}

// benchSession runs the capture req of agents that send packets in all,
// and reports the time per packet.
func benchSession(b *testing.B, agents replayAgents, req Request, packets int) {
	for b.Loop() {
		s, errs := Start(context.Background(), agents, req, Options{BufferBytes: 64 << 20})
		if len(errs) > 0 {
			b.Fatal(errs[0])
		}
		res := s.Run(context.Background(), io.Discard, func() error { return nil }, nil)
		if res.Packets != uint64(packets) {
			b.Fatalf("%d packets written, want %d", res.Packets, packets)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*packets), "ns/packet")
}
