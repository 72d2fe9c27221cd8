package bpfcompile

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcap"

	"github.com/cloudfoundry/pcap-server-release/test/netnstest"
)

// TestMain lets this test binary be its own compiler child.
func TestMain(m *testing.M) {
	Main()
	// Built with -race, every child would sleep a second before it exits
	// (the race runtime's atexit_sleep_ms).
	os.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	os.Exit(m.Run())
}

func orChain(primitive string, n int) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = fmt.Sprintf(primitive, i+1)
	}
	return strings.Join(parts, "||")
}

// compileIn compiles in the namespace ns, for its loopback device.
func compileIn(t *testing.T, ns *netnstest.Namespace, c *Compiler, ctx context.Context, expr string) (insns []pcap.BPFInstruction, err error) {
	t.Helper()
	ns.Do(t, func() error {
		insns, err = c.Compile(ctx, Target{Device: "lo", LinkType: int(layers.LinkTypeEthernet), Snaplen: 65535, Netmask: NetmaskUnknown}, expr)
		return nil
	})
	return insns, err
}

// The child compiles exactly what libpcap compiles on the capture's own
// live handle, in the capture's namespace: also for "vlan", which a
// pcap_open_dead handle compiles differently (it lacks the kernel's VLAN
// metadata).
func TestSameInstructionsAsALiveHandle(t *testing.T) {
	p := netnstest.NewPair(t)
	exprs := []string{"vlan and tcp", "vlan 100 and host 198.18.0.1", "udp dst port 9999",
		"tcp[tcpflags] & (tcp-syn|tcp-fin) != 0 and not port 22", orChain("port %d", 20)}
	var liveVLAN []pcap.BPFInstruction
	p.App.Do(t, func() error {
		for _, dev := range []string{"eth0", "lo", "any"} {
			inactive, err := pcap.NewInactiveHandle(dev)
			if err != nil {
				return err
			}
			defer inactive.CleanUp()
			if err := inactive.SetSnapLen(65535); err != nil {
				return err
			}
			if err := inactive.SetTimeout(50 * time.Millisecond); err != nil {
				return err
			}
			h, err := inactive.Activate()
			if err != nil {
				return fmt.Errorf("activate %s: %w", dev, err)
			}
			defer h.Close()
			target := Target{Device: dev, LinkType: int(h.LinkType()), Snaplen: 65535, Netmask: Netmask(dev)}
			for _, expr := range exprs {
				want, wantErr := h.CompileBPFFilter(expr)
				got, err := (&Compiler{}).Compile(t.Context(), target, expr)
				switch {
				case (err != nil) != (wantErr != nil):
					t.Errorf("%s, %q: the child says %v, the live handle %v", dev, expr, err, wantErr)
				case !slices.Equal(got, want):
					t.Errorf("%s, %q: the child compiled %d instructions, the live handle %d, or they differ", dev, expr, len(got), len(want))
				}
				if dev == "eth0" && expr == exprs[0] {
					liveVLAN = want
				}
			}
		}
		return nil
	})
	// The test's premise: a dead handle compiles "vlan" differently.
	dead, err := pcap.CompileBPFFilter(layers.LinkTypeEthernet, 65535, exprs[0])
	if err != nil {
		t.Fatal(err)
	}
	if slices.Equal(dead, liveVLAN) {
		t.Errorf("%q compiles to the same %d instructions on a dead handle as on a live one: the comparison proves nothing here", exprs[0], len(dead))
	}
	t.Logf("%q: %d instructions on a live handle, %d on a dead one", exprs[0], len(liveVLAN), len(dead))
}

func TestBadFilterCarriesLibpcapMessage(t *testing.T) {
	ns := netnstest.NewNamespace(t)
	_, err := compileIn(t, ns, nil, t.Context(), "tcp port eighty")
	var fe *FilterError
	if !errors.As(err, &fe) || !strings.Contains(fe.Msg, "eighty") {
		t.Fatalf("err %v, want libpcap's message", err)
	}
	_, err = compileIn(t, ns, nil, t.Context(), "ip broadcast")
	if !errors.As(err, &fe) || !strings.Contains(fe.Msg, "netmask") {
		t.Fatalf("ip broadcast without a netmask: %v", err)
	}
}

// A device the child cannot open is not the filter's fault.
func TestDeviceTheChildCannotOpen(t *testing.T) {
	ns := netnstest.NewNamespace(t)
	var err error
	ns.Do(t, func() error {
		_, err = (&Compiler{}).Compile(t.Context(), Target{Device: "nosuch0", LinkType: 1, Snaplen: 65535, Netmask: NetmaskUnknown}, "tcp")
		return nil
	})
	var fe *FilterError
	var be *BudgetError
	if err == nil || errors.As(err, &fe) || errors.As(err, &be) || !strings.Contains(err.Error(), "nosuch0") {
		t.Fatalf("err %v, want an error that names the device and blames neither filter nor budget", err)
	}
}

func TestBudgets(t *testing.T) {
	ns := netnstest.NewNamespace(t)
	for _, tc := range []struct {
		name     string
		budget   Budget
		expr     string
		resource string
	}{
		// 27 s of CPU in full; the child is killed at its first second.
		{"CPU", Budget{CPU: time.Second, Wall: time.Minute}, orChain("port %d", 510), "CPU time"},
		// 40 MB in full.
		{"memory", Budget{Memory: 8 << 20, Wall: time.Minute}, orChain("port %d", 300), "memory"},
		{"wall clock", Budget{Wall: 300 * time.Millisecond}, orChain("port %d", 510), "wall-clock time"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			_, err := compileIn(t, ns, &Compiler{Budget: tc.budget}, t.Context(), tc.expr)
			var be *BudgetError
			if !errors.As(err, &be) || be.Resource != tc.resource {
				t.Fatalf("err %v, want the %s budget", err, tc.resource)
			}
			if !strings.Contains(err.Error(), "budget") {
				t.Errorf("%q does not name the budget", err)
			}
			t.Logf("after %s: %v", time.Since(start).Round(time.Millisecond), err)
		})
	}
}

func TestCancelledCompile(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(100*time.Millisecond, cancel)
	_, err := compileIn(t, netnstest.NewNamespace(t), &Compiler{Budget: Budget{Wall: time.Minute}}, ctx, orChain("port %d", 510))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
}

// Netmask reads the interface of the namespace it runs in, so that "ip
// broadcast" means the container's broadcast address.
func TestNetmaskOfTheNamespace(t *testing.T) {
	p := netnstest.NewPair(t)
	var mask uint32
	var err error
	p.App.Do(t, func() error {
		mask = Netmask("eth0")
		_, err = (&Compiler{}).Compile(t.Context(), Target{Device: "eth0", LinkType: 1, Snaplen: 65535, Netmask: mask}, "ip broadcast")
		return nil
	})
	if mask != 0xffffff00 {
		t.Fatalf("netmask %#x, want 0xffffff00 (198.18.0.2/24)", mask)
	}
	if got := Netmask("no-such-device"); got != NetmaskUnknown {
		t.Errorf("netmask of a missing device %#x", got)
	}
	if err != nil {
		t.Errorf("ip broadcast with the namespace's netmask: %v", err)
	}
}

// CompileAll compiles once for targets that differ only in their device,
// or in their netmask where the filter does not use it: a device that
// does not exist gets the program of one that does, and an error only
// where its own compile was needed.
func TestCompileAllOncePerLinkTypeAndNetmask(t *testing.T) {
	p := netnstest.NewPair(t)
	compileAll := func(expr string) (programs [][]pcap.BPFInstruction, errs []error) {
		p.App.Do(t, func() error {
			mask := Netmask("eth0")
			programs, errs = (&Compiler{}).CompileAll(t.Context(), []Target{
				{Device: "eth0", LinkType: int(layers.LinkTypeEthernet), Snaplen: 65535, Netmask: mask},
				{Device: "nosuch0", LinkType: int(layers.LinkTypeEthernet), Snaplen: 65535, Netmask: mask},
				{Device: "any", LinkType: int(layers.LinkTypeLinuxSLL), Snaplen: 65535, Netmask: NetmaskUnknown},
				{Device: "nosuch1", LinkType: int(layers.LinkTypeEthernet), Snaplen: 65535, Netmask: 0xff000000},
			}, expr)
			return nil
		})
		return programs, errs
	}

	programs, errs := compileAll("udp")
	for k, name := range []string{"nosuch0", "any", "nosuch1"} {
		if errs[k+1] != nil {
			t.Errorf("udp: %s: %v", name, errs[k+1])
		}
	}
	if errs[0] != nil || !slices.Equal(programs[0], programs[1]) || !slices.Equal(programs[0], programs[3]) || len(programs[0]) == 0 {
		t.Errorf("udp: eth0 (%v), nosuch0 and nosuch1 (another netmask): want one program for the three", errs[0])
	}
	if slices.Equal(programs[0], programs[2]) {
		t.Error("udp: any (another link type) got Ethernet's program")
	}

	programs, errs = compileAll("udp or ip broadcast")
	if errs[0] != nil || errs[1] != nil || !slices.Equal(programs[0], programs[1]) {
		t.Errorf("ip broadcast: eth0: %v, nosuch0 with eth0's netmask: %v: want one program for both", errs[0], errs[1])
	}
	var fe *FilterError
	if !errors.As(errs[2], &fe) || !strings.Contains(fe.Msg, "netmask") {
		t.Errorf("ip broadcast: any, without a netmask: %v, want its own compile to refuse it", errs[2])
	}
	if errs[3] == nil || !strings.Contains(errs[3].Error(), "nosuch1") {
		t.Errorf("ip broadcast: nosuch1, another netmask: %v, want its own compile, which cannot open it", errs[3])
	}
}

// CompileAll stays within one wall-clock budget for all targets, and
// says so.
func TestCompileAllWithinOneWallBudget(t *testing.T) {
	ns := netnstest.NewNamespace(t)
	budget := Budget{CPU: time.Minute, Wall: time.Minute, TotalWall: 800 * time.Millisecond}
	start := time.Now()
	var errs []error
	ns.Do(t, func() error {
		_, errs = (&Compiler{Budget: budget}).CompileAll(t.Context(), []Target{
			{Device: "lo", LinkType: int(layers.LinkTypeEthernet), Snaplen: 65535, Netmask: NetmaskUnknown},
			{Device: "any", LinkType: int(layers.LinkTypeLinuxSLL), Snaplen: 65535, Netmask: NetmaskUnknown},
		}, orChain("port %d", 510))
		return nil
	})
	took := time.Since(start)
	for k, err := range errs {
		var be *BudgetError
		if !errors.As(err, &be) || be.Resource != "wall-clock time for all devices" || !strings.Contains(err.Error(), "800ms") {
			t.Errorf("target %d: %v, want the wall-clock budget for all devices", k, err)
		}
	}
	if took > budget.TotalWall+time.Second {
		t.Errorf("took %s, more than the budget of %s for all", took, budget.TotalWall)
	}
	t.Logf("after %s: %v", took.Round(time.Millisecond), errs[0])
}

// A compiler child holds none of the agent's descriptors beyond stdin,
// stdout and stderr, whether the agent marked them close-on-exec or not:
// a packet socket that libpcap opened without the flag must not outlive
// its capture in a child, with its kernel ring. Here the child inherits a
// pipe outright (as descriptor 3), which only the child's own closing
// can take from it.
func TestChildHoldsNoInheritedDescriptor(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	pipe, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", w.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/proc/self/exe", ChildArg)
	cmd.ExtraFiles = []*os.File{w}
	// The child waits for its request: it stays alive to be looked at.
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stdin.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	// The child closes what it inherited before its Go runtime starts, so
	// once it runs a second thread the closing is done.
	proc := fmt.Sprintf("/proc/%d", cmd.Process.Pid)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for {
		tasks, err := os.ReadDir(proc + "/task")
		if err != nil {
			t.Fatalf("the child ended: %v", err)
		}
		if len(tasks) > 1 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("the child's Go runtime did not start within 10s")
		case <-time.After(time.Millisecond): // no event to await from outside
		}
	}
	fds, err := os.ReadDir(proc + "/fd")
	if err != nil {
		t.Fatal(err)
	}
	var held []string
	for _, fd := range fds {
		link, err := os.Readlink(proc + "/fd/" + fd.Name())
		if err == nil {
			held = append(held, fd.Name()+" "+link)
		}
		if link == pipe {
			t.Errorf("the child holds the inherited %s as descriptor %s", pipe, fd.Name())
		}
	}
	t.Logf("the child holds %v", held)
}
