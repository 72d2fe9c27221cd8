package capture

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudfoundry/pcap-server-release/test/netnstest"
	"github.com/cloudfoundry/pcap-server-release/wire"
)

// A ring block handed over while nobody waits must still end the next
// wait: the netpoller's edge for it is gone by then.
func TestWaitSeesABlockHandedOverBefore(t *testing.T) {
	p := netnstest.NewPair(t)
	o := options(p)
	c, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	defer closeCapture(c)
	b := wire.NewBatch(c.batchCap)
	if n, _, err := c.ring.read(b, 1000, flushBytes); err != nil || n.kept != 0 {
		t.Fatalf("read %+v, %v on an empty ring", n, err)
	}
	send(t, p, 1)
	// The block is handed over one read timeout after its packet.
	deadline := time.Now().Add(10 * time.Second)
	for c.ring.view.Ready() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the kernel handed over no block within 10s")
		}
		time.Sleep(time.Millisecond) // polling the ring: nothing to await
	}
	start := time.Now()
	c.ring.wait(start.Add(5*time.Second), func() bool { return false })
	if waited := time.Since(start); waited > time.Second {
		t.Fatalf("wait took %s with a block ready", waited)
	}
	if n, _, err := c.ring.read(b, 1000, flushBytes); err != nil || n.kept != 1 {
		t.Fatalf("read %+v, %v after the wait", n, err)
	}
}

// Traffic that surges while the reader lets blocks gather finds the ring
// with room: the reader reads as soon as an eighth of the ring is taken.
//
// The traffic paces itself so that the test is about the reader's code,
// not about the CPU the machine has to spare: the sender never has more
// than a quarter of the ring unread, so a reader that reads once an
// eighth of the ring is taken keeps up whatever the load and the kernel
// drops nothing, while a reader that waits for a quarter of the ring or
// more, or for its read timeout (an hour here), stops the sender, and the
// test fails.
func TestSurgeWhilePacingLosesNothing(t *testing.T) {
	p := netnstest.NewPair(t)
	o := options(p) // an 8 MiB ring
	o.QueueBytes = 128 << 20
	// Pacing alone would wait an hour: partly filled blocks are never
	// handed over during the test, only full ones.
	o.ReadTimeout = time.Hour
	c, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	if c.ring.view == nil {
		closeCapture(c)
		t.Fatal("no view of the ring: its layout is not libpcap's as expected")
	}
	c.Start()

	// Every datagram carries its sequence number; the consumer checks
	// that none is missing and says when it has read more.
	var consumed atomic.Uint64
	progress := make(chan struct{}, 1)
	done := make(chan error, 1)
	go func() {
		var pkts []wire.Packet
		var gap error
		for b := range c.Batches() {
			var err error
			pkts, err = wire.DecodePackets(b.Frame()[wire.HeaderSize:], pkts[:0])
			if err != nil && gap == nil {
				gap = err
			}
			for _, pk := range pkts {
				if gap != nil {
					break
				}
				// Ethernet, IPv4 and UDP headers, then the number.
				n := consumed.Load()
				if len(pk.Data) < 42+8 {
					gap = fmt.Errorf("a %d-byte frame where datagram %d was due", len(pk.Data), n)
				} else if got := binary.BigEndian.Uint64(pk.Data[42:]); got != n {
					gap = fmt.Errorf("datagram %d came where %d was due", got, n)
				}
				consumed.Store(n + 1)
			}
			c.Release(b)
			select {
			case progress <- struct{}{}:
			default:
			}
		}
		done <- gap
	}()

	p.App.ListenUDP(t, netip.AddrPortFrom(netnstest.AppIP, udpPort))
	conn := p.Peer.DialUDP(t, netip.AddrPortFrom(netnstest.AppIP, udpPort))
	// A datagram's record in a ring block: its frame and libpcap's
	// header, rounded up.
	const datagram, recordBytes = 1200, 1400
	window := o.RingBytes / 4 / recordBytes
	const flood = 40000 // 56 MB of records: seven rings' worth
	msg := make([]byte, datagram)
	sent := 0
	// The flood, then as many more as fill the blocks behind its last
	// datagram, until the reader has read the whole flood.
	for consumed.Load() < flood {
		if sent-int(consumed.Load()) < window {
			if sent >= flood+2*window {
				t.Fatalf("sent %d datagrams, the reader has read %d", sent, consumed.Load())
			}
			binary.BigEndian.PutUint64(msg, uint64(sent))
			if _, err := conn.Write(msg); err != nil {
				t.Fatal(err)
			}
			sent++
			continue
		}
		select {
		case <-progress:
		case <-time.After(30 * time.Second):
			t.Fatalf("the reader left %d datagrams (%d of %d ring blocks handed over) unread for 30s: it waits for more than an eighth of the ring",
				sent-int(consumed.Load()), c.ring.view.Ready(), c.ring.view.Blocks())
		}
	}
	c.Stop(wire.EndRequested, false)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if s := c.Stats(); s.KernelDropped != 0 || s.AgentDropped != 0 {
		t.Fatalf("captured %d of %d, counters %+v", consumed.Load(), sent, s)
	}
	t.Logf("captured %d of %d datagrams, at most %d unread at a time", consumed.Load(), sent, window)
}
