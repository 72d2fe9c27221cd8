// Package netnstest builds throwaway network topologies for tests: pairs
// of network namespaces joined by a veth, addressed from the benchmarking
// range 198.18.0.0/15. Neither end is in the host namespace, so tests can
// run in parallel with the same addresses and their traffic goes nowhere
// else. Everything is removed when the test ends, also when it fails.
package netnstest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/cloudfoundry/pcap-server-release/cellagent/nsenter"
)

// Addresses used on every pair: the app (captured) side and its peer.
var (
	AppIP  = netip.MustParseAddr("198.18.0.2")
	PeerIP = netip.MustParseAddr("198.18.0.1")
)

// Pair is two namespaces joined by a veth: App has eth0 (like a garden
// container), Peer has peer0.
type Pair struct {
	App, Peer *Namespace
}

// Namespace is a named network namespace created with `ip netns add`.
type Namespace struct {
	Name string
}

// Path is the bind mount that names the namespace.
func (n *Namespace) Path() string { return "/run/netns/" + n.Name }

// RequireRoot skips the test, saying why, unless it can create network
// namespaces (root with iproute2).
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipped: creating network namespaces needs root (make test runs as root in CI)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("skipped: iproute2's ip command is not installed (make test installs it)")
	}
}

// NewNamespace creates an empty namespace with lo up, removed at cleanup.
func NewNamespace(t testing.TB) *Namespace {
	t.Helper()
	RequireRoot(t)
	var b [4]byte
	_, _ = rand.Read(b[:])
	n := &Namespace{Name: "pcaptest-" + hex.EncodeToString(b[:])}
	IP(t, "netns", "add", n.Name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", n.Name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", n.Name, err, out)
		}
	})
	IP(t, "-n", n.Name, "link", "set", "lo", "up")
	return n
}

// NewPair creates two namespaces joined by a veth and addressed as
// AppIP/24 (eth0) and PeerIP/24 (peer0).
func NewPair(t testing.TB) *Pair {
	t.Helper()
	p := &Pair{App: NewNamespace(t), Peer: NewNamespace(t)}
	IP(t, "-n", p.App.Name, "link", "add", "eth0", "type", "veth", "peer", "name", "peer0", "netns", p.Peer.Name)
	IP(t, "-n", p.App.Name, "addr", "add", AppIP.String()+"/24", "dev", "eth0")
	IP(t, "-n", p.Peer.Name, "addr", "add", PeerIP.String()+"/24", "dev", "peer0")
	IP(t, "-n", p.App.Name, "link", "set", "eth0", "up")
	IP(t, "-n", p.Peer.Name, "link", "set", "peer0", "up")
	return p
}

// IP runs the ip command and fails the test if it fails.
func IP(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// Do runs fn inside the namespace (on a locked thread). Sockets created by
// fn stay in the namespace.
func (n *Namespace) Do(t testing.TB, fn func() error) {
	t.Helper()
	if err := nsenter.Do(n.Path(), false, fn); err != nil {
		t.Fatal(err)
	}
}

// DialUDP opens a UDP socket in the namespace connected to addr.
func (n *Namespace) DialUDP(t testing.TB, addr netip.AddrPort) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	n.Do(t, func() (err error) {
		c, err = net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(addr))
		return err
	})
	t.Cleanup(func() { c.Close() })
	return c
}

// Listen opens a TCP listener in the namespace.
func (n *Namespace) Listen(t testing.TB, addr string) net.Listener {
	t.Helper()
	var l net.Listener
	n.Do(t, func() (err error) {
		l, err = net.Listen("tcp", addr)
		return err
	})
	t.Cleanup(func() { l.Close() })
	return l
}

// ListenUDP opens a UDP socket in the namespace bound to addr.
func (n *Namespace) ListenUDP(t testing.TB, addr netip.AddrPort) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	n.Do(t, func() (err error) {
		c, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
		return err
	})
	t.Cleanup(func() { c.Close() })
	return c
}

// Star is a hub namespace joined to each of several VM namespaces by a
// veth: VM i (from 1) has eth0 with VMIP(i), the hub the other end, vmN,
// with HubIP(i), each pair its own /24 of 198.18.0.0/15. It stands in for
// a network of BOSH VMs: each VM's namespace is its host, whose devices a
// host capture opens, and the hub is where the API and the director live.
type Star struct {
	Hub *Namespace
	VMs []*Namespace
}

// HubIP is the hub's address towards VM i; VMIP is VM i's.
func HubIP(i int) netip.Addr { return netip.AddrFrom4([4]byte{198, 18, byte(i), 1}) }
func VMIP(i int) netip.Addr  { return netip.AddrFrom4([4]byte{198, 18, byte(i), 2}) }

// NewStar creates the hub and n VMs (at most 250), removed at cleanup.
func NewStar(t testing.TB, n int) *Star {
	t.Helper()
	if n < 1 || n > 250 {
		t.Fatalf("a star of %d VMs", n)
	}
	s := &Star{Hub: NewNamespace(t)}
	for i := 1; i <= n; i++ {
		vm := NewNamespace(t)
		hubSide := fmt.Sprintf("vm%d", i)
		IP(t, "-n", vm.Name, "link", "add", "eth0", "type", "veth", "peer", "name", hubSide, "netns", s.Hub.Name)
		IP(t, "-n", vm.Name, "addr", "add", VMIP(i).String()+"/24", "dev", "eth0")
		IP(t, "-n", s.Hub.Name, "addr", "add", HubIP(i).String()+"/24", "dev", hubSide)
		IP(t, "-n", vm.Name, "link", "set", "eth0", "up")
		IP(t, "-n", s.Hub.Name, "link", "set", hubSide, "up")
		s.VMs = append(s.VMs, vm)
	}
	return s
}

// Command is name with args run inside the namespace (ip netns exec
// keeps the environment the command is given).
func (n *Namespace) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}
