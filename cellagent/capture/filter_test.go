package capture

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cloudfoundry/pcap-server-release/internal/cputime"
	"github.com/cloudfoundry/pcap-server-release/internal/netnstest"
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

// One tenant's filter that takes libpcap half a minute to compile must not
// hold another tenant's capture start on the same cell: it compiles in a
// child process with a budget, and ends as a bad filter naming it.
func TestHostileFilterDoesNotHoldOtherCaptures(t *testing.T) {
	hostile, other := netnstest.NewPair(t), netnstest.NewPair(t)
	// How long a start takes here without a hostile filter: on a loaded
	// machine it can take a while by itself.
	start := time.Now()
	c, err := Open(options(other))
	if err != nil {
		t.Fatal(err)
	}
	alone := time.Since(start)
	c.Start()
	c.Stop(wire.EndRequested, false)
	<-c.Done()

	ho := options(hostile)
	ho.Filter = hostileFilter()
	before, err := cputime.Tree(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		c, err := Open(ho)
		if c != nil {
			c.Start()
			c.Stop(wire.EndRequested, false)
			<-c.Done()
		}
		done <- err
	}()
	// Compiling: the process tree is busy (here or in a child).
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := cputime.Await(ctx, os.Getpid(), before, 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}

	start = time.Now()
	c, err = Open(options(other))
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	if took > time.Second && took > alone+time.Second {
		t.Errorf("the other tenant's capture took %s to start while the hostile filter compiled (%s without it)", took, alone)
	}
	select {
	case err := <-done:
		t.Fatalf("the hostile filter finished (%v) before the other capture had started: nothing was shown", err)
	default:
	}
	c.Start()
	send(t, other, 5)
	c.Stop(wire.EndRequested, true)
	assertDatagrams(t, collect(t, c), 5)

	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the hostile filter's compile was not ended within 30s")
	}
	var oe *OpenError
	if !errors.As(err, &oe) || oe.Code != wire.ErrBadFilter || !strings.Contains(oe.Msg, "budget") {
		t.Fatalf("hostile filter: %v, want a bad filter that names the budget", err)
	}
	t.Logf("the other capture started in %s (%s without the hostile filter); the hostile filter: %s", took, alone, oe.Msg)
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
	if c != nil {
		c.Start()
		c.Stop(wire.EndRequested, false)
		<-c.Done()
	}
	var oe *OpenError
	if !errors.As(err, &oe) || oe.Code != wire.ErrBadFilter || !strings.Contains(oe.Msg, "4096") {
		t.Fatalf("err %v, want a bad filter over the kernel's 4096 instructions", err)
	}
}
