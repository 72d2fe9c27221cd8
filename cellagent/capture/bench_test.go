package capture

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cloudfoundry/pcap-server-release/test/netnstest"
	"github.com/cloudfoundry/pcap-server-release/wire"
)

// BenchmarkCaptureBurst measures the agent's capture loop alone (libpcap
// to queued batches) on a burst of 100-byte UDP datagrams.
//
//	go test -run '^$' -bench CaptureBurst -benchtime 3x ./cellagent/capture
func BenchmarkCaptureBurst(b *testing.B) {
	const burst = 200000
	p := netnstest.NewPair(b)
	p.App.ListenUDP(b, netip.AddrPortFrom(netnstest.AppIP, udpPort))
	conn := p.Peer.DialUDP(b, netip.AddrPortFrom(netnstest.AppIP, udpPort))
	msg := make([]byte, 100)
	var captured uint64
	for b.Loop() {
		o := options(p)
		o.Filter = "udp"
		c, err := Open(o)
		if err != nil {
			b.Fatal(err)
		}
		c.Start()
		done := make(chan struct{})
		go func() {
			defer close(done)
			for batch := range c.Batches() {
				c.Release(batch)
			}
		}()
		for i := range burst {
			copy(msg, fmt.Sprintf("%08d", i))
			if _, err := conn.Write(msg); err != nil {
				b.Fatal(err)
			}
		}
		// Stop drains what the ring still holds.
		c.Stop(wire.EndRequested, true)
		<-done
		captured += c.Stats().Packets
	}
	b.ReportMetric(float64(captured)/float64(b.N)/burst, "captured-share")
}

// BenchmarkReadLoop measures the read loop alone, without the cost of
// sending the packets: a burst of small datagrams is put into a large
// kernel ring first, then read. It reports wall time per packet (the
// consumer only counts), which is the loop's CPU time on an idle machine,
// and the process's CPU time per packet, which a busy machine inflates
// less.
//
//	go test -run '^$' -bench ReadLoop -benchtime 5x ./cellagent/capture
func BenchmarkReadLoop(b *testing.B) {
	const burst = 200000
	p := netnstest.NewPair(b)
	p.App.ListenUDP(b, netip.AddrPortFrom(netnstest.AppIP, udpPort))
	conn := p.Peer.DialUDP(b, netip.AddrPortFrom(netnstest.AppIP, udpPort))
	msg := make([]byte, 18)
	var elapsed, cpu time.Duration
	var got uint64
	for b.Loop() {
		o := options(p)
		o.Filter = "udp"
		o.RingBytes = 128 << 20
		o.QueueBytes = 128 << 20
		c, err := Open(o)
		if err != nil {
			b.Fatal(err)
		}
		for range burst {
			if _, err := conn.Write(msg); err != nil {
				b.Fatal(err)
			}
		}
		// Up to 90 %: the last ring block is handed over only after the
		// read timeout, which is not the loop's cost.
		start, startCPU := time.Now(), processCPU(b)
		c.Start()
		var n uint64
		for n < burst*9/10 {
			batch := <-c.Batches()
			n += uint64(batch.Count())
			c.Release(batch)
		}
		elapsed += time.Since(start)
		cpu += processCPU(b) - startCPU
		got += n
		c.Stop(wire.EndRequested, false)
		for batch := range c.Batches() {
			c.Release(batch)
		}
	}
	b.ReportMetric(float64(elapsed.Nanoseconds())/float64(got), "ns/packet")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(got), "cpu-ns/packet")
}

// processCPU is the CPU time of this process so far, user and system.
func processCPU(b *testing.B) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
