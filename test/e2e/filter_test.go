package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/cloudfoundry/pcap-server-release/cellagent/bpfcompile"
	"github.com/cloudfoundry/pcap-server-release/proxy/apiconfig"
	"github.com/cloudfoundry/pcap-server-release/test/netnstest"
	"github.com/cloudfoundry/pcap-server-release/test/proctree"
	"github.com/cloudfoundry/pcap-server-release/wire"
)

// One tenant's filter that keeps libpcap's optimizer busy for half a
// minute must not hold another tenant's capture on the same cell. The real
// agent binary serves both. The hostile request comes straight over the
// tunnel, as an API replica without the filter bound (an older one) would
// send it; the other tenant's capture goes through the API.
//
// Not held means the other capture starts while the hostile compile still
// runs: the test waits for the agent's compiler child rather than for it
// to have used some CPU, which a niced child on a busy machine may not get
// within its budget (5 s of wall-clock time, the agent's default).
func TestHostileFilterDoesNotHoldOtherTenants(t *testing.T) {
	netnstest.RequireRoot(t)
	p := newPKI(t)
	hostileApp, otherApp := newApp(t), newApp(t)
	const cell = "127.0.0.1"
	api := startAPI(t, p, []apiconfig.DevTarget{
		{AppGUID: appGUID, AppName: appName, Index: 0, CellIP: cell},
		{AppGUID: appGUID, AppName: appName, Index: 1, CellIP: cell},
	}, nil)
	agentProc := startAgentProcess(t, p, api, cell, map[string]string{
		appGUID + "/0": hostileApp.pair.App.Path(),
		appGUID + "/1": otherApp.pair.App.Path(),
	})
	agent, ok := api.d.Registry().Lookup(netip.MustParseAddr(cell))
	if !ok {
		t.Fatal("agent not registered")
	}

	// How long the other tenant's capture takes to start on its own: on a
	// loaded machine that can be a while by itself.
	start := time.Now()
	resp := startCapture(t, api, url.Values{"instance": {"1"}, "filter": {"udp"}, "duration": {"1ms"}})
	alone := time.Since(start)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the other tenant's capture alone: status %d", resp.StatusCode)
	}
	finish(t, resp)

	parts := make([]string, 510)
	for i := range parts {
		parts[i] = fmt.Sprintf("port %d", i+1)
	}
	stream, err := agent.Open(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	if err := wire.NewWriter(stream).WriteMessage(&wire.CaptureRequest{CaptureID: "hostile", AppGUID: appGUID, Index: 0,
		Device: "eth0", Filter: strings.Join(parts, "||"), Snaplen: 65535}); err != nil {
		t.Fatal(err)
	}
	type answer struct {
		m   wire.Message
		err error
	}
	answered := make(chan answer, 1)
	go func() {
		f, err := wire.NewReader(stream).NextKnown(nil)
		if err != nil {
			answered <- answer{err: err}
			return
		}
		m, err := wire.Decode(f)
		answered <- answer{m, err}
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if _, err := proctree.AwaitCommand(ctx, agentProc.Process.Pid, bpfcompile.ChildArg); err != nil {
		t.Fatal(err) // the agent never started compiling
	}

	start = time.Now()
	resp = startCapture(t, api, url.Values{"instance": {"1"}, "filter": {"udp"}, "packets": {"5"}})
	took := time.Since(start)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the other tenant's capture: status %d", resp.StatusCode)
	}
	select {
	case a := <-answered:
		t.Fatalf("the hostile request was answered (%v, %v) before the other capture started (after %s; %s alone): it held the other", a.m, a.err, took, alone)
	default:
	}
	otherApp.send(t, "other", 5)
	if rows := tshark(t, finish(t, resp).file, "udp.payload"); len(rows) != 5 {
		t.Errorf("the other tenant's capture holds %d packets, want 5", len(rows))
	}

	var a answer
	select {
	case a = <-answered:
	case <-time.After(30 * time.Second):
		t.Fatal("the agent did not answer the hostile request within 30s")
	}
	e, ok := a.m.(*wire.Error)
	if a.err != nil || !ok || e.Code != wire.ErrBadFilter || !strings.Contains(e.Message, "budget") {
		t.Fatalf("hostile request answered %+v, %v; want a bad_filter error that names the budget", a.m, a.err)
	}
	t.Logf("the other tenant's capture started in %s (%s without the hostile filter); the hostile request: %s", took, alone, e.Message)
}
