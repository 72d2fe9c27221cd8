package capture

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cloudfoundry/pcap-server-release/cellagent/bpfcompile"
	"github.com/cloudfoundry/pcap-server-release/test/netnstest"
	"github.com/cloudfoundry/pcap-server-release/test/proctree"
	"github.com/cloudfoundry/pcap-server-release/wire"
)

// hostileFilter is valid, 4,990 characters long, and keeps libpcap's
// optimizer busy for about 27 s and 110 MB.
func hostileFilter() string {
	parts := make([]string, 510)
	for i := range parts {
		parts[i] = fmt.Sprintf("port %d", i+1)
	}
	return strings.Join(parts, "||")
}

// hostileCompiler is the budget for the hostile filter where a test
// needs its compile to run for a while: the default CPU budget (2 s) ends
// it on an idle machine; on a busy one, where the niced child gets a
// sliver of the CPU, a wall clock far beyond what a capture start takes
// there.
func hostileCompiler() *bpfcompile.Compiler {
	return &bpfcompile.Compiler{Budget: bpfcompile.Budget{Wall: 10 * time.Second, TotalWall: 10 * time.Second}}
}

// openAndClose opens a capture with o in a goroutine, ends it at once if
// it opened, and delivers Open's error.
func openAndClose(o Options) <-chan error {
	done := make(chan error, 1)
	go func() {
		c, err := Open(o)
		closeCapture(c)
		done <- err
	}()
	return done
}

// One tenant's filter that takes libpcap half a minute to compile must not
// hold another tenant's capture start on the same cell: it compiles in a
// child process with a budget, and ends as a bad filter naming it.
//
// Not held means the other capture starts while the hostile compile
// still runs, however long either takes on a busy machine: the test waits
// for the compiler child, and gives the hostile compile a wall-clock
// budget far beyond what a start takes.
func TestHostileFilterDoesNotHoldOtherCaptures(t *testing.T) {
	hostile, other := netnstest.NewPair(t), netnstest.NewPair(t)
	start := time.Now()
	c, err := Open(options(other))
	if err != nil {
		t.Fatal(err)
	}
	alone := time.Since(start)
	closeCapture(c)

	ho := options(hostile)
	ho.Filter = hostileFilter()
	ho.Compiler = hostileCompiler()
	done := openAndClose(ho)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if _, err := proctree.AwaitCommand(ctx, os.Getpid(), bpfcompile.ChildArg); err != nil {
		t.Fatal(err) // the hostile compile never started
	}

	start = time.Now()
	c, err = Open(options(other))
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		t.Fatalf("the hostile filter finished (%v) before the other capture had started: it held the other", err)
	default:
	}
	c.Start()
	send(t, other, 5)
	c.Stop(wire.EndRequested, true)
	assertDatagrams(t, collect(t, c), 5)

	select {
	case err = <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("the hostile filter's compile was not ended within 60s")
	}
	var oe *OpenError
	if !errors.As(err, &oe) || oe.Code != wire.ErrBadFilter || !strings.Contains(oe.Msg, "budget") {
		t.Fatalf("hostile filter: %v, want a bad filter that names the budget", err)
	}
	t.Logf("the other capture started in %s (%s without the hostile filter); the hostile filter: %s", took, alone, oe.Msg)
}

// The agent refuses host names itself, as the API does (an older API
// does not): libpcap would resolve them in the container's network.
func TestHostNameRefusedBeforeCompiling(t *testing.T) {
	o := options(netnstest.NewPair(t))
	o.Filter = "udp and host many.example"
	c, err := Open(o)
	closeCapture(c)
	var oe *OpenError
	if !errors.As(err, &oe) || oe.Code != wire.ErrBadFilter || !strings.Contains(oe.Msg, `host "many.example"`) || !strings.Contains(oe.Msg, "refused") {
		t.Fatalf("err %v, want a bad filter that refuses the host name", err)
	}
}

// A filter the kernel cannot run (more than 4096 BPF instructions) is
// refused: libpcap would otherwise copy every packet to user space and
// filter there, on a cell that runs apps.
func TestFilterBeyondTheKernelsLimit(t *testing.T) {
	o := options(netnstest.NewPair(t))
	parts := make([]string, 150)
	for i := range parts {
		parts[i] = fmt.Sprintf("ip6 protochain %d", i)
	}
	o.Filter = strings.Join(parts, " or ")
	c, err := Open(o)
	closeCapture(c)
	var oe *OpenError
	if !errors.As(err, &oe) || oe.Code != wire.ErrBadFilter || !strings.Contains(oe.Msg, "4096") {
		t.Fatalf("err %v, want a bad filter over the kernel's 4096 instructions", err)
	}
}

// openFiles names what pid's descriptors refer to, by descriptor number:
// a socket by its inode ("socket:[N]"), an eventfd by its id ("eventfd
// N"), anything else by its link. Descriptors closed while it reads are
// left out.
func openFiles(pid string) (map[string]string, error) {
	dir := "/proc/" + pid + "/fd"
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	files := make(map[string]string, len(ents))
	for _, e := range ents {
		link, err := os.Readlink(dir + "/" + e.Name())
		if err != nil {
			continue
		}
		if link == "anon_inode:[eventfd]" {
			info, err := os.ReadFile("/proc/" + pid + "/fdinfo/" + e.Name())
			if err != nil {
				continue
			}
			for line := range strings.Lines(string(info)) {
				if id, ok := strings.CutPrefix(line, "eventfd-id:"); ok {
					link = "eventfd " + strings.TrimSpace(id)
				}
			}
		}
		files[e.Name()] = link
	}
	return files, nil
}

// A compiler child must not hold other captures' packet sockets (each
// with its kernel ring) or libpcap's eventfds: closing a capture would not
// free its socket while a compile runs. libpcap opens them without
// close-on-exec.
func TestCompileChildInheritsNoCapture(t *testing.T) {
	p := netnstest.NewPair(t)
	before, err := openFiles("self")
	if err != nil {
		t.Fatal(err)
	}
	c, err := Open(options(p))
	if err != nil {
		t.Fatal(err)
	}
	defer closeCapture(c)
	after, err := openFiles("self")
	if err != nil {
		t.Fatal(err)
	}
	// What the capture holds: its packet socket, and libpcap's eventfd
	// where it keeps one (libpcap 1.10 opens none for a handle that is
	// non-blocking from the start, as the agent's are).
	held := map[string]bool{}
	for fd, f := range after {
		if before[fd] != f && (strings.HasPrefix(f, "socket:") || strings.HasPrefix(f, "eventfd")) {
			held[f] = true
		}
	}
	if !slices.ContainsFunc(slices.Collect(maps.Keys(held)), func(f string) bool { return strings.HasPrefix(f, "socket:") }) {
		t.Fatalf("the open capture holds %v: no socket to look for", held)
	}

	ho := options(netnstest.NewPair(t))
	ho.Filter = hostileFilter()
	ho.Compiler = hostileCompiler()
	done := openAndClose(ho)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	child, err := proctree.AwaitCommand(ctx, os.Getpid(), bpfcompile.ChildArg)
	if err != nil {
		t.Fatal(err)
	}
	pid := strconv.Itoa(child)
	files, err := openFiles(pid)
	if err != nil {
		t.Fatalf("the compiler child ended before its descriptors could be read: %v", err)
	}
	for fd, f := range files {
		if held[f] {
			t.Errorf("the compiler child holds the open capture's %s as descriptor %s", f, fd)
		}
	}
	t.Logf("compiler child %s holds %v; the capture %v", pid, files, held)
	if err := <-done; err == nil {
		t.Error("the hostile filter compiled")
	}
}

// vlanFrame is an Ethernet broadcast frame tagged with VLAN id that
// carries a UDP datagram from the peer to the app.
func vlanFrame(id uint16, payload []byte) []byte {
	f := []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 1}
	f = binary.BigEndian.AppendUint16(f, 0x8100)
	f = binary.BigEndian.AppendUint16(f, id)
	f = binary.BigEndian.AppendUint16(f, 0x0800)
	udpLen := 8 + len(payload)
	ip := []byte{0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0}
	binary.BigEndian.PutUint16(ip[2:], uint16(20+udpLen))
	ip = append(ip, netnstest.PeerIP.AsSlice()...)
	ip = append(ip, netnstest.AppIP.AsSlice()...)
	f = append(f, ip...)
	f = binary.BigEndian.AppendUint16(f, 5555)
	f = binary.BigEndian.AppendUint16(f, udpPort)
	f = binary.BigEndian.AppendUint16(f, uint16(udpLen))
	f = binary.BigEndian.AppendUint16(f, 0)
	return append(f, payload...)
}

// A "vlan" filter matches VLAN-tagged frames. The kernel takes the tag
// off a received frame before capture sockets see it and keeps it as
// metadata, which libpcap tests on a live handle only: compiled on a
// pcap_open_dead handle the filter looks for the tag in the bytes, and
// matches nothing.
func TestVLANFilterMatchesTaggedFrames(t *testing.T) {
	p := netnstest.NewPair(t)
	o := options(p)
	o.Filter = "vlan 100 and udp"
	c, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	c.Start()
	p.Peer.Do(t, func() error {
		ifc, err := net.InterfaceByName("peer0")
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		to := &unix.SockaddrLinklayer{Ifindex: ifc.Index, Halen: 6, Addr: [8]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}
		for i := range 5 {
			if err := unix.Sendto(fd, vlanFrame(100, payload(i)), 0, to); err != nil {
				return err
			}
			// Another VLAN: not wanted.
			if err := unix.Sendto(fd, vlanFrame(200, payload(100+i)), 0, to); err != nil {
				return err
			}
		}
		return nil
	})
	c.Stop(wire.EndRequested, true)
	pkts := collect(t, c)
	if len(pkts) != 5 {
		t.Fatalf("captured %d frames of VLAN 100, want 5", len(pkts))
	}
	for i, pk := range pkts {
		// libpcap puts the tag back in front of the frame's type.
		if len(pk.Data) < 18 || binary.BigEndian.Uint16(pk.Data[12:]) != 0x8100 || binary.BigEndian.Uint16(pk.Data[14:])&0xfff != 100 {
			t.Fatalf("frame %d: % x, want VLAN 100", i, pk.Data[:min(len(pk.Data), 18)])
		}
		if !bytes.HasSuffix(pk.Data, payload(i)) {
			t.Fatalf("frame %d does not carry %q", i, payload(i))
		}
	}
}

// A filter over budget costs one budget for all devices of a capture, not
// one per device: four devices must not take the capture start beyond the
// API's wait for the agent's answer (15 s), where the user would get a
// 503 instead of a 400 that names the budget.
func TestSlowFilterOnSeveralDevicesCostsOneBudget(t *testing.T) {
	p := netnstest.NewPair(t)
	netnstest.IP(t, "-n", p.App.Name, "link", "add", "eth1", "type", "veth", "peer", "name", "eth1p")
	netnstest.IP(t, "-n", p.App.Name, "link", "set", "eth1", "up")
	netnstest.IP(t, "-n", p.App.Name, "link", "set", "eth1p", "up")
	o := options(p)
	o.Filter = hostileFilter()
	// The wall-clock budget ends each compile, not the CPU budget.
	const wall = 2 * time.Second
	o.Compiler = &bpfcompile.Compiler{Budget: bpfcompile.Budget{CPU: time.Minute, Wall: wall}}
	devices := []string{"eth0", "lo", "eth1", "any"}
	// The devices make two distinct compiles (eth0, lo and eth1 are all
	// Ethernet); one budget for all means one compiler child in all,
	// which the test counts rather than timing the compiles.
	children := map[int]bool{}
	watching, watched := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(watched)
		tick := time.NewTicker(5 * time.Millisecond) // each child lives a budget long
		defer tick.Stop()
		for {
			for _, pid := range proctree.WithArg(os.Getpid(), bpfcompile.ChildArg) {
				children[pid] = true
			}
			select {
			case <-watching:
				return
			case <-tick.C:
			}
		}
	}()
	start := time.Now()
	caps, errs := OpenDevices(o, devices)
	took := time.Since(start)
	close(watching)
	<-watched
	for k, err := range errs {
		if caps[k] != nil {
			caps[k].Start()
			caps[k].Stop(wire.EndRequested, false)
			<-caps[k].Done()
		}
		var oe *OpenError
		if !errors.As(err, &oe) || oe.Code != wire.ErrBadFilter || !strings.Contains(oe.Msg, "budget") {
			t.Errorf("%s: %v, want a bad filter that names the budget", devices[k], err)
		}
	}
	if len(children) != 1 {
		t.Errorf("%d compiler children for %d devices, want 1: one budget for all", len(children), len(devices))
	}
	// The API's wait, which a budget per device would exceed by default
	// (4 × 5 s); what matters is an order of magnitude, not the machine.
	if took > 15*time.Second {
		t.Errorf("the capture of %d devices took %s to fail, beyond the API's wait of 15s", len(devices), took.Round(time.Millisecond))
	}
	t.Logf("failed after %s: %v", took.Round(time.Millisecond), errs[0])
}
