package bpfcompile

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcap"

	"github.com/cloudfoundry/pcap-server-release/internal/netnstest"
)

// TestMain lets this test binary be its own compiler child.
func TestMain(m *testing.M) {
	Main()
	os.Exit(m.Run())
}

func orChain(primitive string, n int) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = fmt.Sprintf(primitive, i+1)
	}
	return strings.Join(parts, "||")
}

// The child compiles exactly what gopacket would compile in-process.
func TestSameInstructionsAsInProcess(t *testing.T) {
	for _, expr := range []string{"udp dst port 9999", "tcp[tcpflags] & (tcp-syn|tcp-fin) != 0 and not port 22", orChain("port %d", 20)} {
		want, err := pcap.CompileBPFFilter(layers.LinkTypeEthernet, 65535, expr)
		if err != nil {
			t.Fatal(err)
		}
		got, err := (&Compiler{}).Compile(t.Context(), int(layers.LinkTypeEthernet), 65535, NetmaskUnknown, expr)
		if err != nil {
			t.Fatalf("%q: %v", expr, err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%q: child compiled %d instructions, in-process %d, or they differ", expr, len(got), len(want))
		}
	}
}

func TestBadFilterCarriesLibpcapMessage(t *testing.T) {
	_, err := (*Compiler)(nil).Compile(t.Context(), 1, 65535, NetmaskUnknown, "tcp port eighty")
	var fe *FilterError
	if !errors.As(err, &fe) || !strings.Contains(fe.Msg, "eighty") {
		t.Fatalf("err %v, want libpcap's message", err)
	}
	_, err = (*Compiler)(nil).Compile(t.Context(), 1, 65535, NetmaskUnknown, "ip broadcast")
	if !errors.As(err, &fe) || !strings.Contains(fe.Msg, "netmask") {
		t.Fatalf("ip broadcast without a netmask: %v", err)
	}
}

func TestBudgets(t *testing.T) {
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
			_, err := (&Compiler{Budget: tc.budget}).Compile(t.Context(), 1, 65535, NetmaskUnknown, tc.expr)
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
	_, err := (&Compiler{Budget: Budget{Wall: time.Minute}}).Compile(ctx, 1, 65535, NetmaskUnknown, orChain("port %d", 510))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
}

// Netmask reads the interface of the namespace it runs in, so that "ip
// broadcast" means the container's broadcast address.
func TestNetmaskOfTheNamespace(t *testing.T) {
	p := netnstest.NewPair(t)
	var mask uint32
	p.App.Do(t, func() error {
		mask = Netmask("eth0")
		return nil
	})
	if mask != 0xffffff00 {
		t.Fatalf("netmask %#x, want 0xffffff00 (198.18.0.2/24)", mask)
	}
	if got := Netmask("no-such-device"); got != NetmaskUnknown {
		t.Errorf("netmask of a missing device %#x", got)
	}
	if _, err := (&Compiler{}).Compile(t.Context(), 1, 65535, mask, "ip broadcast"); err != nil {
		t.Errorf("ip broadcast with the namespace's netmask: %v", err)
	}
}
