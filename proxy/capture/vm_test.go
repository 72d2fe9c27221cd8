package capture

import (
	"bytes"
	"context"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/cloudfoundry/pcap-server-release/wire"
)

// vmsFor plays one agent per VM of deployment cf, group router, each
// saying hello as its VM (id router-N, az z1, IP 10.1.0.N+1).
func vmsFor(t *testing.T, scripts ...script) (fakeAgents, []Target) {
	agents := fakeAgents{}
	var targets []Target
	for i, s := range scripts {
		ip := netip.AddrFrom4([4]byte{10, 1, 0, byte(i + 1)})
		vm := VM{Deployment: "cf", Group: "router", Index: i, ID: "router-" + string(rune('a'+i)), AZ: "z1", IPs: []netip.Addr{ip}}
		agents[ip] = &fakeAgent{t: t, script: s,
			bosh: &wire.BoshInstance{Deployment: vm.Deployment, InstanceGroup: vm.Group, ID: vm.ID, Index: vm.Index, AZ: vm.AZ}}
		targets = append(targets, vm)
	}
	t.Cleanup(func() {
		for _, a := range agents {
			a.wg.Wait()
		}
	})
	return agents, targets
}

// A capture of VMs asks each VM's agent for its host, by its identity,
// and names a pcapng interface per VM and device GROUP/INDEX/DEVICE,
// described with the deployment, the instance id, the az, the IP and the
// device.
func TestVMCaptureNamesInterfacesByInstanceAndDevice(t *testing.T) {
	host := func(t *testing.T, req *wire.CaptureRequest, r *wire.Reader, w *wire.Writer) {
		if !req.Host() || req.Bosh == nil || req.Bosh.Deployment != "cf" || req.Bosh.InstanceGroup != "router" ||
			!strings.HasPrefix(req.Bosh.ID, "router-") || req.AppGUID != "" || req.Validate() != nil {
			t.Errorf("request %+v (vm %+v)", req, req.Bosh)
		}
		_ = w.WriteMessage(&wire.Started{LinkType: 1, Snaplen: req.Snaplen, Device: req.Device})
		_ = packetsFrame(w, int64(10+req.Bosh.Index))
		_ = w.WriteMessage(&wire.End{Reason: wire.EndDuration, Stats: wire.Stats{Counters: wire.Counters{Packets: 1}}})
	}
	agents, targets := vmsFor(t, host, host)
	req := request(targets)
	req.Format = FormatPcapng
	sess, failed := Start(context.Background(), agents, req, Options{BufferBytes: 1 << 20})
	if sess == nil || len(failed) != 0 {
		t.Fatalf("start: %v", failed)
	}
	if got := sess.Started(); len(got) != 2 || got[0].Instance() != "router/0" || got[1].Instance() != "router/1" {
		t.Fatalf("started %v", got)
	}
	var out bytes.Buffer
	res := sess.Run(context.Background(), &out, func() error { return nil }, noStop())
	if res.Packets != 2 || res.Instances[1].Instance != "router/1" {
		t.Fatalf("result %+v", res)
	}
	r, _, ifaces := readPcapng(t, out.Bytes())
	if len(ifaces) != 2 || ifaces[0] != 0 || ifaces[1] != 1 {
		t.Fatalf("packets on interfaces %v", ifaces)
	}
	for i, want := range []string{"router/0/eth0", "router/1/eth0"} {
		iface, err := r.Interface(i)
		if err != nil || iface.Name != want {
			t.Fatalf("interface %d: %+v, %v", i, iface, err)
		}
		for _, part := range []string{"deployment cf", "instance " + want[:len(want)-len("/eth0")], "id router-", "az z1", "IP 10.1.0.", "device eth0"} {
			if !strings.Contains(iface.Description, part) {
				t.Errorf("interface %s description %q lacks %q", want, iface.Description, part)
			}
		}
	}
}

// Only the agent at one of the VM's IPs that says hello as that VM gets
// the request; every other case is named, with a status that says whose
// fault it is.
func TestVMAgentMatchedByIdentityAndAddress(t *testing.T) {
	never := func(t *testing.T, req *wire.CaptureRequest, r *wire.Reader, w *wire.Writer) {
		t.Errorf("an agent that is not the VM got a request for %+v", req.Bosh)
	}
	agents, targets := vmsFor(t, never, never, never, never)
	// VM 0's agent says it is VM 1; VM 1's has no identity; VM 2's speaks
	// version 2; VM 3 has no agent.
	ip := func(i int) netip.Addr { return targets[i].(VM).IPs[0] }
	agents[ip(0)].bosh = agents[ip(1)].bosh
	agents[ip(1)].bosh = nil
	agents[ip(2)].version = 2
	delete(agents, ip(3))
	noVM := VM{Deployment: "cf", Group: "router", Index: 4, ID: "router-e", Unavailable: "the director lists no VM for instance router/4 (router-e)"}
	noIP := VM{Deployment: "cf", Group: "router", Index: 5, ID: "router-f"}
	sess, failed := Start(context.Background(), agents, request(append(targets, noVM, noIP)), Options{BufferBytes: 1 << 20})
	if sess != nil {
		t.Fatal("a capture started")
	}
	want := []struct {
		instance string
		status   int
		text     string
	}{
		{"router/0", http.StatusBadGateway, "identity mismatch: the agent at 10.1.0.1 says it is instance router/1 (router-b)"},
		{"router/1", http.StatusBadGateway, "has no BOSH identity"},
		{"router/2", http.StatusBadGateway, "too old to capture its VM"},
		{"router/3", http.StatusServiceUnavailable, "no agent connected for VM router/3 (10.1.0.4)"},
		{"router/4", http.StatusConflict, "no VM"},
		{"router/5", http.StatusConflict, "no IP address"},
	}
	if len(failed) != len(want) {
		t.Fatalf("failed %v", failed)
	}
	for i, w := range want {
		f := failed[i]
		if f.Instance != w.instance || f.Status != w.status || !strings.Contains(f.Message, w.text) {
			t.Errorf("%s: %d %q, want %d %q", w.instance, f.Status, f.Message, w.status, w.text)
		}
	}
	if h := FormatInstanceErrors(failed); !strings.HasPrefix(h, "router/0: identity mismatch") {
		t.Errorf("Pcap-Instance-Errors %q", h)
	}
}

// The agent's refusals of a host request reach the client with a status
// of their own: host capture off is the operator's no (403).
func TestVMAgentRefusals(t *testing.T) {
	refuse := func(code wire.ErrorCode) script {
		return func(t *testing.T, req *wire.CaptureRequest, r *wire.Reader, w *wire.Writer) {
			_ = w.WriteMessage(&wire.Error{Code: code, Message: "because " + string(code)})
		}
	}
	agents, targets := vmsFor(t, refuse(wire.ErrHostCaptureDisabled), refuse(wire.ErrWrongInstance))
	_, failed := Start(context.Background(), agents, request(targets), Options{BufferBytes: 1 << 20})
	if len(failed) != 2 || failed[0].Status != http.StatusForbidden || failed[1].Status != http.StatusBadGateway ||
		!strings.Contains(failed[0].Message, "VM router/0 (10.1.0.1): because host_capture_disabled") {
		t.Fatalf("failed %v", failed)
	}
}

// A stop of a host capture through another replica goes only to agents
// that know host captures: an older one would read it as an app's.
func TestStopElsewhereHostNeedsVersion3(t *testing.T) {
	agents, targets := vmsFor(t, nil)
	ip := targets[0].(VM).IPs[0]
	agents[ip].version = 2
	out := StopElsewhere(context.Background(), agents, []netip.Addr{ip},
		wire.StopCapture{CaptureID: "c1", Target: wire.TargetHost, Deployment: "cf", Requester: "u"})
	if len(out.Errors) != 1 || !strings.Contains(out.Errors[0].Error(), "too old") {
		t.Fatalf("outcome %+v", out)
	}
}
