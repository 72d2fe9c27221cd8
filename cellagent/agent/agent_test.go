package agent

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/cloudfoundry/pcap-server-release/cellagent/bpfcompile"
	"github.com/cloudfoundry/pcap-server-release/cellagent/nsenter"
	"github.com/cloudfoundry/pcap-server-release/test/netnstest"
	"github.com/cloudfoundry/pcap-server-release/wire"
)

// TestMain lets this test binary be the filter compiler's child process,
// and checks that no stream leaves a goroutine behind.
func TestMain(m *testing.M) {
	bpfcompile.Main()
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goroutines left behind:", err)
			code = 1
		}
	}
	os.Exit(code)
}

var router0 = wire.BoshInstance{Deployment: "cf", InstanceGroup: "router", ID: "6a3c-0000", Index: 0, AZ: "z1"}

// noContainers is a locator for agents that must not look for one.
type noContainers struct{ t *testing.T }

func (n noContainers) Locate(context.Context, *wire.CaptureRequest) (Container, error) {
	n.t.Error("a host request looked for a container")
	return Container{}, &LocateError{Code: wire.ErrContainerNotFound, Msg: "none"}
}

func newAgent(t *testing.T, host bool, me *wire.BoshInstance) *Agent {
	return New(Options{MaxCaptures: 2, RingBytes: 1 << 20, ReadTimeout: 10 * time.Millisecond,
		HostCapture: host, Bosh: me, Locator: noContainers{t}})
}

func hostRequest(vm wire.BoshInstance) *wire.CaptureRequest {
	return &wire.CaptureRequest{CaptureID: "c1", Target: wire.TargetHost, Bosh: &vm, Device: "eth0",
		Filter: "udp", Snaplen: 65535, Owner: "admin"}
}

// ask sends req on a stream of its own and returns the agent's first
// answer; serve runs the agent's side.
func ask(t *testing.T, req wire.Message, serve func(net.Conn)) (wire.Message, *wire.Reader, *wire.Writer, net.Conn) {
	t.Helper()
	api, agentSide := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		serve(agentSide)
		agentSide.Close()
	}()
	t.Cleanup(func() {
		api.Close()
		<-done
	})
	_ = api.SetDeadline(time.Now().Add(30 * time.Second))
	r, w := wire.NewReader(api), wire.NewWriter(api)
	if err := w.WriteMessage(req); err != nil {
		t.Fatal(err)
	}
	f, err := r.NextKnown(nil)
	if err != nil {
		t.Fatal(err)
	}
	m, err := wire.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	return m, r, w, api
}

// Host requests are refused with a typed error unless host capture is
// on and the request names this VM; none of them looks for a container.
func TestHostRequestRefusals(t *testing.T) {
	other := router0
	other.ID = "7b4d-1111"
	otherDeployment := router0
	otherDeployment.Deployment = "cf-2"
	for _, c := range []struct {
		name string
		host bool
		me   *wire.BoshInstance
		req  *wire.CaptureRequest
		code wire.ErrorCode
		text string
	}{
		{"host capture off", false, &router0, hostRequest(router0), wire.ErrHostCaptureDisabled, "host_capture.enabled"},
		{"off, no identity", false, nil, hostRequest(router0), wire.ErrHostCaptureDisabled, "this VM"},
		{"another VM", true, &router0, hostRequest(other), wire.ErrWrongInstance, "7b4d-1111"},
		{"another deployment", true, &router0, hostRequest(otherDeployment), wire.ErrWrongInstance, "cf-2"},
		{"no identity", true, nil, hostRequest(router0), wire.ErrWrongInstance, "no BOSH identity"},
		{"names an app too", true, &router0, func() *wire.CaptureRequest {
			r := hostRequest(router0)
			r.AppGUID = "app"
			return r
		}(), wire.ErrBadRequest, "names an app"},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := newAgent(t, c.host, c.me)
			m, _, _, _ := ask(t, c.req, func(s net.Conn) { a.ServeStream(context.Background(), s) })
			e, ok := m.(*wire.Error)
			if !ok || e.Code != c.code || !strings.Contains(e.Message, c.text) {
				t.Fatalf("answer %#v, want %s mentioning %q", m, c.code, c.text)
			}
			if a.Active() != 0 {
				t.Fatalf("%d captures counted after a refusal", a.Active())
			}
		})
	}
}

// With host capture on, the agent captures the devices of its own
// namespace: the agent's stream runs on a thread in the app side of a
// namespace pair, as an agent started in a VM would, sees that
// namespace's eth0, and a stop for the deployment reaches it.
func TestHostCaptureInTheAgentsNamespace(t *testing.T) {
	p := netnstest.NewPair(t)
	a := newAgent(t, true, &router0)
	served := make(chan struct{})
	m, r, _, api := ask(t, hostRequest(router0), func(s net.Conn) {
		defer close(served)
		if err := inVM(p, func() { a.ServeStream(context.Background(), s) }); err != nil {
			t.Error(err)
		}
	})
	st, ok := m.(*wire.Started)
	if !ok || st.LinkType != 1 || st.Device != "eth0" || st.Container != "" {
		t.Fatalf("answer %#v", m)
	}
	p.App.ListenUDP(t, netip.AddrPortFrom(netnstest.AppIP, 9999))
	conn := p.Peer.DialUDP(t, netip.AddrPortFrom(netnstest.AppIP, 9999))
	for i := range 5 {
		if _, err := fmt.Fprintf(conn, "host-datagram-%d", i); err != nil {
			t.Fatal(err)
		}
	}
	// An app's stop does not touch it; the deployment's does.
	if res := a.stop(&wire.StopCapture{CaptureID: "c1", AppGUID: "app", Requester: "admin"}); res.Outcome != wire.StopNotFound {
		t.Fatalf("an app's stop: %+v", res)
	}
	if res := a.stop(&wire.StopCapture{CaptureID: "c1", Target: wire.TargetHost, Deployment: "cf-2", Requester: "admin"}); res.Outcome != wire.StopNotFound {
		t.Fatalf("another deployment's stop: %+v", res)
	}
	if res := a.stop(&wire.StopCapture{CaptureID: "c1", Target: wire.TargetHost, Deployment: "cf", Requester: "someone"}); res.Outcome != wire.StopForbidden {
		t.Fatalf("a stranger's stop: %+v", res)
	}
	if res := a.stop(&wire.StopCapture{CaptureID: "c1", Target: wire.TargetHost, Deployment: "cf", Requester: "admin"}); res.Outcome != wire.StopStopping {
		t.Fatalf("the owner's stop: %+v", res)
	}
	var packets int
	for {
		f, err := r.NextKnown(nil)
		if err != nil {
			t.Fatal(err)
		}
		if f.Type == wire.TypePackets {
			pkts, err := wire.DecodePackets(f.Payload, nil)
			if err != nil {
				t.Fatal(err)
			}
			packets += len(pkts)
			continue
		}
		m, err := wire.Decode(f)
		if err != nil {
			t.Fatal(err)
		}
		if end, ok := m.(*wire.End); ok {
			if end.Reason != wire.EndRequested || end.Stats.Packets != 5 || packets != 5 {
				t.Fatalf("end %+v after %d packets, want 5", end, packets)
			}
			break
		}
	}
	api.Close()
	<-served
}

// inVM runs fn on a thread in the app side of p, as the agent's
// goroutines run in the VM's namespace.
func inVM(p *netnstest.Pair, fn func()) error {
	return nsenter.Do(p.App.Path(), false, func() error { fn(); return nil })
}
