package capture

import (
	"bytes"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/cloudfoundry/pcap-server-release/test/netnstest"
	"github.com/cloudfoundry/pcap-server-release/wire"
)

// collectDevice consumes every batch of a capture that is one device of
// several: each must be a DevicePackets frame of its device index.
func collectDevice(t *testing.T, c *Capture, index int) []wire.Packet {
	t.Helper()
	return collectFrames(t, c, func(frame []byte, pkts []wire.Packet) ([]wire.Packet, error) {
		if wire.Type(frame[0]) != wire.TypeDevicePackets {
			t.Fatalf("device %d: a %s frame", index, wire.Type(frame[0]))
		}
		dev, pkts, err := wire.DecodeDevicePackets(frame[wire.HeaderSize:], pkts)
		if err == nil && dev != index {
			t.Fatalf("device %d: a frame of device %d", index, dev)
		}
		return pkts, err
	})
}

// Several devices are opened in one visit to the namespace, each its own
// capture; a device the container lacks fails alone, naming itself.
func TestOpenDevicesCapturesEachAndFailsAlone(t *testing.T) {
	p := netnstest.NewPair(t)
	o := options(p)
	o.Filter = "udp"
	o.DeviceFrames = true
	caps, errs := OpenDevices(o, []string{"eth0", "nosuch0", "lo"})
	var oe *OpenError
	if !errors.As(errs[1], &oe) || oe.Code != wire.ErrNoSuchDevice || !strings.Contains(oe.Msg, "nosuch0") || caps[1] != nil {
		t.Fatalf("nosuch0: %v", errs[1])
	}
	if errs[0] != nil || errs[2] != nil {
		t.Fatalf("eth0: %v, lo: %v", errs[0], errs[2])
	}
	eth0, lo := caps[0], caps[2]
	eth0.Start()
	lo.Start()
	// From the peer over eth0; inside the namespace over lo.
	send(t, p, 5)
	loAddr := netip.MustParseAddrPort("127.0.0.1:9998")
	p.App.ListenUDP(t, loAddr)
	local := p.App.DialUDP(t, loAddr)
	for i := range 3 {
		if _, err := local.Write(payload(100 + i)); err != nil {
			t.Fatal(err)
		}
	}
	eth0.Stop(wire.EndRequested, true)
	lo.Stop(wire.EndRequested, true)
	assertDatagrams(t, collectDevice(t, eth0, 0), 5)
	onLo := collectDevice(t, lo, 2)
	if len(onLo) != 3 {
		t.Fatalf("%d packets on lo, want 3", len(onLo))
	}
	for i, pk := range onLo {
		if got := udpPayload(t, pk.Data); !bytes.Equal(got, payload(100+i)) {
			t.Fatalf("lo packet %d carries %q", i, got)
		}
	}
	if s := lo.Stats(); s.Packets != 3 {
		t.Fatalf("lo counters %+v", s)
	}
}

// A device that is down cannot be captured: the same typed error as a
// missing one.
func TestDeviceDownIsNoSuchDevice(t *testing.T) {
	p := netnstest.NewPair(t)
	netnstest.IP(t, "-n", p.App.Name, "link", "set", "lo", "down")
	caps, errs := OpenDevices(options(p), []string{"eth0", "lo"})
	var oe *OpenError
	if !errors.As(errs[1], &oe) || oe.Code != wire.ErrNoSuchDevice || !strings.Contains(oe.Msg, "lo") {
		t.Fatalf("lo down: %v", errs[1])
	}
	if caps[0] == nil {
		t.Fatalf("eth0: %v", errs[0])
	}
	caps[0].Start()
	caps[0].Stop(wire.EndRequested, false)
	<-caps[0].Done()
}
