package libpcap

import (
	"errors"
	"math"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/cloudfoundry/pcap-server-release/test/netnstest"
	"github.com/cloudfoundry/pcap-server-release/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const udpPort = 9999

func config(device string) Config {
	return Config{Device: device, Snaplen: 65535, BufferBytes: 8 << 20, Timeout: time.Millisecond}
}

// open opens a capture of device in ns, closed when the test ends.
func open(t *testing.T, ns *netnstest.Namespace, cfg Config) *Handle {
	t.Helper()
	var h *Handle
	ns.Do(t, func() (err error) {
		h, err = Open(cfg)
		return err
	})
	t.Cleanup(h.Close)
	return h
}

// sender returns a function that sends n datagrams of 100 bytes from
// the peer to the app.
func sender(t *testing.T, p *netnstest.Pair) func(n int) {
	t.Helper()
	p.App.ListenUDP(t, netip.AddrPortFrom(netnstest.AppIP, udpPort))
	conn := p.Peer.DialUDP(t, netip.AddrPortFrom(netnstest.AppIP, udpPort))
	msg := make([]byte, 100)
	return func(n int) {
		for range n {
			if _, err := conn.Write(msg); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// Close from another goroutine while Dispatch reads a full ring: Close
// waits for the dispatch to return before libpcap frees the ring, and
// the reader's next call says ErrClosed. Under -race a Close that does
// not wait shows as a race on the handle; without -race, as libpcap
// reading freed memory.
func TestCloseDuringDispatch(t *testing.T) {
	p := netnstest.NewPair(t)
	const rounds, packets = 20, 5000
	send := sender(t, p)
	var dispatched uint64
	for range rounds {
		h := open(t, p.App, config("eth0"))
		send(packets)
		started := make(chan struct{})
		ended := make(chan error, 1)
		go func() {
			buf := make([]byte, 1<<20)
			for n := 0; ; n++ {
				r, _, err := h.Dispatch(buf, math.MaxUint64, len(buf))
				if err != nil {
					ended <- err
					return
				}
				if n == 0 {
					close(started)
				}
				dispatched += r.Kept
			}
		}()
		<-started
		h.Close()
		if err := <-ended; !errors.Is(err, ErrClosed) {
			t.Fatalf("the reader ended with %v, want ErrClosed", err)
		}
	}
	if dispatched == 0 {
		t.Fatal("no packet was dispatched: the closes met no reading")
	}
	t.Logf("%d packets dispatched over %d rounds", dispatched, rounds)
}

// A closed handle answers every call with ErrClosed, and closes once.
func TestClosedHandle(t *testing.T) {
	p := netnstest.NewPair(t)
	h := open(t, p.App, config("eth0"))
	h.Close()
	h.Close()
	if _, _, err := h.Dispatch(make([]byte, 100), 1, 1); !errors.Is(err, ErrClosed) {
		t.Errorf("Dispatch: %v", err)
	}
	if _, err := h.Stats(); !errors.Is(err, ErrClosed) {
		t.Errorf("Stats: %v", err)
	}
	if err := h.SetFilter([]Instruction{{Code: 0x06, K: 0xffff}}); !errors.Is(err, ErrClosed) {
		t.Errorf("SetFilter: %v", err)
	}
}

// closeOnExec lists the process's descriptors, each with whether it is
// close-on-exec.
func closeOnExec(t *testing.T) map[int]bool {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fdinfo")
	if err != nil {
		t.Fatal(err)
	}
	fds := map[int]bool{}
	for _, e := range ents {
		fd, _ := strconv.Atoi(e.Name())
		info, err := os.ReadFile("/proc/self/fdinfo/" + e.Name())
		if err != nil {
			continue // closed meanwhile
		}
		for line := range strings.Lines(string(info)) {
			if v, ok := strings.CutPrefix(line, "flags:"); ok {
				flags, err := strconv.ParseUint(strings.TrimSpace(v), 8, 64)
				if err != nil {
					t.Fatalf("fdinfo %d: flags %q", fd, v)
				}
				fds[fd] = flags&0o2000000 != 0 // O_CLOEXEC
			}
		}
	}
	return fds
}

// libpcap opens its packet socket without close-on-exec; the handle's
// descriptors have it, so no child holds a capture's socket and ring.
func TestDescriptorsAreCloseOnExec(t *testing.T) {
	p := netnstest.NewPair(t)
	before := closeOnExec(t)
	h := open(t, p.App, config("eth0"))
	after := closeOnExec(t)
	if cloexec, ok := after[h.SelectableFD()]; !ok || before[h.SelectableFD()] || !cloexec {
		t.Errorf("the capture's descriptor %d: open %v, close-on-exec %v", h.SelectableFD(), ok, cloexec)
	}
	for fd, cloexec := range after {
		if _, old := before[fd]; !old && !cloexec {
			t.Errorf("descriptor %d appeared with the capture without close-on-exec", fd)
		}
	}
}

// A missing or down device is told apart from other failures.
func TestActivateErrors(t *testing.T) {
	p := netnstest.NewPair(t)
	// A veth is down until set up.
	netnstest.IP(t, "-n", p.App.Name, "link", "add", "down0", "type", "veth", "peer", "name", "down1")
	for _, dev := range []string{"nosuch0", "down0"} {
		var err error
		p.App.Do(t, func() error {
			var h *Handle
			if h, err = Open(config(dev)); h != nil {
				h.Close()
			}
			return nil
		})
		var ae *ActivateError
		if !errors.As(err, &ae) || !ae.DeviceUnusable() || !strings.Contains(err.Error(), dev) {
			t.Errorf("%s: %v, want an unusable device named in the message", dev, err)
		}
	}
}

// Dispatch writes wire records the wire package decodes, with the
// handle's timestamps in nanoseconds, and counts what it passed over.
func TestDispatchWritesWireRecords(t *testing.T) {
	p := netnstest.NewPair(t)
	h := open(t, p.App, config("eth0"))
	// Only the datagrams: the filter of "udp dst port 9999" for Ethernet.
	if err := h.SetFilter(udpDstPort9999); err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	sender(t, p)(10)
	b := wire.NewBatch(64 << 10)
	var over uint64
	deadline := time.Now().Add(10 * time.Second)
	for b.Count()+int(over) < 10 {
		if time.Now().After(deadline) {
			t.Fatalf("read %d of 10 datagrams within 10s", b.Count())
		}
		// At most 4 wanted: the rest is read and passed over.
		r, _, err := h.Dispatch(b.Spare(), uint64(max(4-b.Count(), 0)), 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		b.Commit(r.Len, int(r.Kept))
		over += r.Over
		// Until the kernel hands over the next ring block.
		if _, err := unix.Poll([]unix.PollFd{{Fd: int32(h.SelectableFD()), Events: unix.POLLIN}}, 100); err != nil && !errors.Is(err, unix.EINTR) {
			t.Fatal(err)
		}
	}
	pkts, err := wire.DecodePackets(b.Frame()[wire.HeaderSize:], nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(pkts) != 4 || over != 6 {
		t.Fatalf("%d records written and %d passed over, want 4 and 6", len(pkts), over)
	}
	for i, pk := range pkts {
		if len(pk.Data) != 14+20+8+100 || pk.Length != len(pk.Data) {
			t.Errorf("record %d: %d of %d bytes", i, len(pk.Data), pk.Length)
		}
		if ts := time.Unix(0, pk.Timestamp); ts.Before(before) || ts.After(time.Now()) {
			t.Errorf("record %d stamped %s, sent after %s", i, ts, before)
		}
	}
	s, err := h.Stats()
	if err != nil || s.Received < 10 || s.Dropped != 0 {
		t.Errorf("stats %+v, %v", s, err)
	}
}

// udpDstPort9999 is `tcpdump -dd udp dst port 9999` on Ethernet.
var udpDstPort9999 = []Instruction{
	{0x28, 0, 0, 0x0000000c},
	{0x15, 0, 4, 0x000086dd},
	{0x30, 0, 0, 0x00000014},
	{0x15, 0, 11, 0x00000011},
	{0x28, 0, 0, 0x00000038},
	{0x15, 8, 9, 0x0000270f},
	{0x15, 0, 8, 0x00000800},
	{0x30, 0, 0, 0x00000017},
	{0x15, 0, 6, 0x00000011},
	{0x28, 0, 0, 0x00000014},
	{0x45, 4, 0, 0x00001fff},
	{0xb1, 0, 0, 0x0000000e},
	{0x48, 0, 0, 0x00000010},
	{0x15, 0, 1, 0x0000270f},
	{0x6, 0, 0, 0x00040000},
	{0x6, 0, 0, 0x00000000},
}
