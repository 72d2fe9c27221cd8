package capture

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/cloudfoundry/pcap-server-release/cellagent/bpfcompile"
	"github.com/cloudfoundry/pcap-server-release/test/netnstest"
	"github.com/cloudfoundry/pcap-server-release/wire"
)

const udpPort = 9999

func options(p *netnstest.Pair) Options {
	return Options{
		NetnsPath:   p.App.Path(),
		Device:      "eth0",
		Filter:      fmt.Sprintf("udp dst port %d", udpPort),
		Snaplen:     65535,
		RingBytes:   8 << 20,
		ReadTimeout: 50 * time.Millisecond,
		QueueBytes:  8 << 20,
		// Starting the compiler child (this -race test binary) on a busy
		// machine can take the default 5 s of wall-clock time by itself:
		// a benign filter must not fail for it here. The budget's own
		// tests set theirs; the CPU budget stays the default.
		Compiler: &bpfcompile.Compiler{Budget: bpfcompile.Budget{Wall: time.Minute, TotalWall: time.Minute}},
	}
}

// payload is the unique content of datagram i.
func payload(i int) []byte { return fmt.Appendf(nil, "pcap-test-datagram-%06d", i) }

// send sends n datagrams with unique payloads from the peer to the app.
func send(t *testing.T, p *netnstest.Pair, n int) {
	t.Helper()
	// The app listens, so that no ICMP port-unreachable refuses the sender.
	p.App.ListenUDP(t, netip.AddrPortFrom(netnstest.AppIP, udpPort))
	conn := p.Peer.DialUDP(t, netip.AddrPortFrom(netnstest.AppIP, udpPort))
	for i := range n {
		if _, err := conn.Write(payload(i)); err != nil {
			t.Fatalf("send datagram %d: %v", i, err)
		}
	}
}

// closeCapture ends a capture that was opened (started or not) and waits
// for its handle to close; a nil capture is fine.
func closeCapture(c *Capture) {
	if c == nil {
		return
	}
	c.Start() // the reader loop closes the handle
	c.Stop(wire.EndRequested, false)
	<-c.Done()
}

// collect consumes every batch until the capture ends.
func collect(t *testing.T, c *Capture) []wire.Packet {
	t.Helper()
	return collectFrames(t, c, func(frame []byte, pkts []wire.Packet) ([]wire.Packet, error) {
		if wire.Type(frame[0]) != wire.TypePackets {
			t.Fatalf("a %s frame", wire.Type(frame[0]))
		}
		return wire.DecodePackets(frame[wire.HeaderSize:], pkts)
	})
}

// collectFrames consumes every batch until the capture ends, decoding
// each frame with decode.
func collectFrames(t *testing.T, c *Capture, decode func(frame []byte, pkts []wire.Packet) ([]wire.Packet, error)) []wire.Packet {
	t.Helper()
	var pkts []wire.Packet
	timeout := time.After(30 * time.Second)
	for {
		select {
		case b, ok := <-c.Batches():
			if !ok {
				<-c.Done()
				return pkts
			}
			var err error
			f := bytes.Clone(b.Frame())
			c.Release(b)
			if pkts, err = decode(f, pkts); err != nil {
				t.Fatal(err)
			}
		case <-timeout:
			t.Fatal("capture did not end within 30s")
		}
	}
}

// udpPayload extracts the UDP payload of an Ethernet/IPv4/UDP frame.
func udpPayload(t *testing.T, frame []byte) []byte {
	t.Helper()
	const eth, ip, udp = 14, 20, 8
	if len(frame) < eth+ip+udp || frame[12] != 0x08 || frame[13] != 0x00 || frame[eth+9] != 17 {
		t.Fatalf("not an Ethernet/IPv4/UDP frame: % x", frame[:min(len(frame), 40)])
	}
	return frame[eth+ip+udp:]
}

func assertDatagrams(t *testing.T, pkts []wire.Packet, n int) {
	t.Helper()
	if len(pkts) != n {
		t.Fatalf("captured %d packets, want %d", len(pkts), n)
	}
	for i, p := range pkts {
		if got := udpPayload(t, p.Data); !bytes.Equal(got, payload(i)) {
			t.Fatalf("packet %d carries %q, want %q", i, got, payload(i))
		}
		if i > 0 && p.Timestamp < pkts[i-1].Timestamp {
			t.Fatalf("packet %d is older than packet %d", i, i-1)
		}
	}
}

func TestStopDrainsWhatTheKernelHolds(t *testing.T) {
	p := netnstest.NewPair(t)
	o := options(p)
	// A long read timeout keeps the packets in a partly filled ring block:
	// without the drain they would be lost when the handle closes.
	o.ReadTimeout = 500 * time.Millisecond
	c, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	if c.LinkType() != 1 {
		t.Fatalf("link type %d, want Ethernet", c.LinkType())
	}
	c.Start()
	before := time.Now()
	send(t, p, 40)
	c.Stop(wire.EndRequested, true)
	pkts := collect(t, c)
	// The kernel stamps a packet when the peer's softirq delivers it,
	// which may be after send returned: bound it by the collection.
	after := time.Now()
	assertDatagrams(t, pkts, 40)
	// Kernel timestamps in nanoseconds, on the same clock as time.Now.
	micros := 0
	for i, pk := range pkts {
		if ts := time.Unix(0, pk.Timestamp); ts.Before(before) || ts.After(after) {
			t.Fatalf("packet %d stamped %s, sent after %s and collected by %s", i, ts, before, after)
		}
		if pk.Timestamp%1000 == 0 {
			micros++
		}
	}
	if micros == len(pkts) {
		t.Fatal("every timestamp is a whole microsecond: not nanosecond precision")
	}
	reason, err := c.Result()
	if reason != wire.EndRequested || err != nil {
		t.Fatalf("ended %s, %v", reason, err)
	}
	if s := c.Stats(); s.Packets != 40 || s.AgentDropped != 0 || s.Bytes != uint64(40*len(pkts[0].Data)) {
		t.Fatalf("stats %+v", s)
	}
}

func TestMaxPacketsStopsExactly(t *testing.T) {
	p := netnstest.NewPair(t)
	o := options(p)
	o.MaxPackets = 7
	c, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	c.Start()
	send(t, p, 20)
	pkts := collect(t, c)
	assertDatagrams(t, pkts, 7)
	if reason, _ := c.Result(); reason != wire.EndPackets {
		t.Fatalf("ended %s", reason)
	}
}

func TestDurationEndsCaptureIdleOrNot(t *testing.T) {
	p := netnstest.NewPair(t)
	o := options(p)
	o.Duration = 300 * time.Millisecond
	c, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	c.Start()
	send(t, p, 3)
	pkts := collect(t, c)
	assertDatagrams(t, pkts, 3)
	if reason, _ := c.Result(); reason != wire.EndDuration {
		t.Fatalf("ended %s", reason)
	}
	if d := time.Since(start); d < o.Duration {
		t.Fatalf("ended after %v, before its duration", d)
	}
}

func TestSnaplenTruncates(t *testing.T) {
	p := netnstest.NewPair(t)
	o := options(p)
	o.Snaplen = 50
	c, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	c.Start()
	send(t, p, 3)
	c.Stop(wire.EndRequested, true)
	pkts := collect(t, c)
	if len(pkts) != 3 {
		t.Fatalf("%d packets", len(pkts))
	}
	for _, pk := range pkts {
		if len(pk.Data) != 50 || pk.Length != 14+20+8+len(payload(0)) {
			t.Fatalf("captured %d of %d bytes", len(pk.Data), pk.Length)
		}
	}
}

// The consumer never reads: the queue fills, the rest is dropped and
// counted, and captured + dropped accounts for every datagram sent.
func TestSlowConsumerDropsAndCounts(t *testing.T) {
	p := netnstest.NewPair(t)
	o := options(p)
	// Room for one batch: the queue holds the buffers' memory.
	o.QueueBytes = flushBytes + wire.RecordHeaderSize + o.Snaplen
	c, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	c.Start()
	p.App.ListenUDP(t, netip.AddrPortFrom(netnstest.AppIP, udpPort))
	conn := p.Peer.DialUDP(t, netip.AddrPortFrom(netnstest.AppIP, udpPort))
	sendRange := func(from, to int) {
		for i := from; i < to; i++ {
			if _, err := conn.Write(payload(i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	sendRange(0, 10)
	// The first ten fill the one batch the queue holds, if they share a
	// ring block; if the sender was descheduled past the read timeout
	// they came in several blocks, and the batch that went first holds
	// the queue. Either way each of the ten is queued or dropped.
	deadline := time.Now().Add(10 * time.Second)
	for s := c.Stats(); s.Packets+s.AgentDropped < 10; s = c.Stats() {
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v: the first 10 datagrams were not handled within 10s", s)
		}
		time.Sleep(5 * time.Millisecond) // polling counters: nothing to await
	}
	queued := c.Stats().Packets
	if queued == 0 {
		t.Fatalf("stats %+v: none of the first 10 datagrams was queued", c.Stats())
	}
	// ...and the rest find it full.
	const sent = 50
	sendRange(10, sent)
	c.Stop(wire.EndRequested, true)
	<-c.Done()
	s := c.Stats()
	if s.Packets != queued || s.AgentDropped != sent-queued || s.KernelDropped != 0 {
		t.Fatalf("stats %+v, want %d queued and %d dropped by the agent", s, queued, sent-queued)
	}
	t.Logf("%d of the first 10 datagrams queued", queued)
	assertDatagrams(t, collect(t, c), int(queued))
}

// An idle capture sleeps until the kernel has packets: a few wakeups a
// second for its counters, not one per read timeout.
func TestIdleCaptureSleeps(t *testing.T) {
	p := netnstest.NewPair(t)
	c, err := Open(options(p))
	if err != nil {
		t.Fatal(err)
	}
	c.Start()
	const window = 2 * time.Second
	time.Sleep(window) // the observation window, not a wait for an event
	wakeups := c.wakeups.Load()
	c.Stop(wire.EndRequested, false)
	<-c.Done()
	// One read timeout per wakeup would be 40 in two seconds.
	if limit := uint64(window/statsInterval) + 2; wakeups > limit {
		t.Fatalf("%d wakeups in %s of silence, want at most %d", wakeups, window, limit)
	}
}

func TestBadFilterCarriesLibpcapMessage(t *testing.T) {
	p := netnstest.NewPair(t)
	o := options(p)
	o.Filter = "tcp port eighty"
	_, err := Open(o)
	var oe *OpenError
	if !errors.As(err, &oe) || oe.Code != wire.ErrBadFilter || !strings.Contains(oe.Msg, "eighty") {
		t.Fatalf("err %v", err)
	}
	if !strings.Contains(oe.Msg, "unknown port") && !strings.Contains(oe.Msg, "syntax error") {
		t.Fatalf("no libpcap message in %q", oe.Msg)
	}
}

func TestNoSuchDevice(t *testing.T) {
	p := netnstest.NewPair(t)
	o := options(p)
	o.Device = "eth9"
	_, err := Open(o)
	var oe *OpenError
	if !errors.As(err, &oe) || oe.Code != wire.ErrNoSuchDevice {
		t.Fatalf("err %v", err)
	}
}

func TestRefusesHostNamespace(t *testing.T) {
	netnstest.RequireRoot(t)
	o := Options{NetnsPath: "/proc/self/ns/net", Device: "lo", Snaplen: 100, RingBytes: 1 << 20, ReadTimeout: 10 * time.Millisecond, QueueBytes: 1 << 20}
	_, err := Open(o)
	var oe *OpenError
	if !errors.As(err, &oe) || oe.Code != wire.ErrNoNetns || !strings.Contains(oe.Msg, "host") {
		t.Fatalf("err %v", err)
	}
}

func TestInterfaceRemovedEndsAsContainerGone(t *testing.T) {
	p := netnstest.NewPair(t)
	c, err := Open(options(p))
	if err != nil {
		t.Fatal(err)
	}
	c.Start()
	send(t, p, 5)
	netnstest.IP(t, "-n", p.App.Name, "link", "del", "eth0")
	pkts := collect(t, c)
	reason, err := c.Result()
	if reason != wire.EndContainerGone || err == nil {
		t.Fatalf("ended %s, %v", reason, err)
	}
	assertDatagrams(t, pkts, 5)
}

// A host capture opens the devices of the namespace the agent runs in:
// here the test enters the app's namespace as an agent started there (a
// BOSH VM's) would be, and the capture, its filter compiled by a child,
// sees that namespace's eth0.
func TestHostCapturesTheAgentsOwnNamespace(t *testing.T) {
	p := netnstest.NewPair(t)
	o := options(p)
	o.NetnsPath, o.Host = "", true
	var c *Capture
	p.App.Do(t, func() (err error) {
		c, err = Open(o)
		return err
	})
	c.Start()
	send(t, p, 5)
	c.Stop(wire.EndRequested, true)
	assertDatagrams(t, collect(t, c), 5)
}

// A capture names the host or a namespace path, never both or neither:
// an empty path is not taken for the host.
func TestHostOrPathNotBoth(t *testing.T) {
	p := netnstest.NewPair(t)
	for name, o := range map[string]Options{
		"neither": {Device: "eth0", Snaplen: 100, ReadTimeout: time.Millisecond},
		"both":    {Host: true, NetnsPath: p.App.Path(), Device: "eth0", Snaplen: 100, ReadTimeout: time.Millisecond},
	} {
		c, err := Open(o)
		var oe *OpenError
		if c != nil || !errors.As(err, &oe) || oe.Code != wire.ErrInternal {
			closeCapture(c)
			t.Errorf("%s: %v", name, err)
		}
	}
}
