package capture

import (
	"net/netip"
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
func TestSurgeWhilePacingLosesNothing(t *testing.T) {
	p := netnstest.NewPair(t)
	o := options(p) // an 8 MiB ring
	o.QueueBytes = 128 << 20
	// A long read timeout: pacing alone would wait half a second.
	o.ReadTimeout = 500 * time.Millisecond
	c, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	if c.ring.view == nil {
		t.Fatal("no view of the ring: its layout is not libpcap's as expected")
	}
	c.Start()
	done := make(chan uint64)
	go func() {
		var n uint64
		for b := range c.Batches() {
			n += uint64(b.Count())
			c.Release(b)
		}
		done <- n
	}()
	p.App.ListenUDP(t, netip.AddrPortFrom(netnstest.AppIP, udpPort))
	conn := p.Peer.DialUDP(t, netip.AddrPortFrom(netnstest.AppIP, udpPort))
	msg := make([]byte, 1200)
	// A trickle, read once its block is handed over: the reader paces.
	for range 5 {
		if _, err := conn.Write(msg); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for c.Stats().Packets < 5 {
		if time.Now().After(deadline) {
			t.Fatal("the trickle was not read within 10s")
		}
		time.Sleep(time.Millisecond) // polling the counters: nothing to await
	}
	const flood = 40000 // 48 MB: six rings' worth
	for range flood {
		if _, err := conn.Write(msg); err != nil {
			t.Fatal(err)
		}
	}
	c.Stop(wire.EndRequested, true)
	got := <-done
	if s := c.Stats(); s.KernelDropped != 0 || got != 5+flood {
		t.Fatalf("captured %d of %d, counters %+v", got, 5+flood, s)
	}
}
