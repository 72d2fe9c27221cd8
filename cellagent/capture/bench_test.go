package capture

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/cloudfoundry/pcap-server-release/internal/netnstest"
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
