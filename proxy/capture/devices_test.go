package capture

import (
	"bytes"
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/cloudfoundry/pcap-server-release/internal/buildinfo"
	"github.com/cloudfoundry/pcap-server-release/wire"
)

func devicePacketsFrame(w *wire.Writer, dev int, ts ...int64) error {
	b := wire.NewDeviceBatch(dev, 0)
	for _, t := range ts {
		b.Append(t, 100, bytes.Repeat([]byte{byte(t)}, 60))
	}
	return w.WriteBatch(b)
}

// startedDevices answers a request of several devices; failing maps a
// device to the error it fails with.
func startedDevices(req *wire.CaptureRequest, failing map[string]*wire.Error) *wire.Started {
	s := &wire.Started{LinkType: 1, Snaplen: req.Snaplen, Device: req.Device, Container: "handle-" + req.Device}
	for _, d := range req.Devices {
		if e, ok := failing[d]; ok {
			s.Devices = append(s.Devices, wire.DeviceStart{Device: d, Error: e})
		} else {
			s.Devices = append(s.Devices, wire.DeviceStart{Device: d, LinkType: 1})
		}
	}
	return s
}

// Each (instance, device) is a source of its own: an instance's stream
// interleaves its devices' batches, and the file is in timestamp order
// across all of them, one interface per instance and device, with each
// device's counters in its statistics.
func TestDevicesMergeInTimestampOrder(t *testing.T) {
	agent := func(frames func(w *wire.Writer)) script {
		return func(t *testing.T, req *wire.CaptureRequest, r *wire.Reader, w *wire.Writer) {
			if !slices.Equal(req.Devices, []string{"eth0", "lo"}) || req.Device != "eth0" {
				t.Errorf("request devices %v, device %q", req.Devices, req.Device)
			}
			_ = w.WriteMessage(startedDevices(req, nil))
			frames(w)
			_ = w.WriteMessage(&wire.End{Reason: wire.EndDuration, Stats: wire.Stats{
				Counters: wire.Counters{Packets: 9, KernelDropped: 3, AgentDropped: 1},
				Devices:  []wire.Counters{{Packets: 4, AgentDropped: 1}, {Packets: 5, KernelDropped: 3}},
			}})
		}
	}
	agents, targets := agentsFor(t,
		// A batch of lo may hold packets older than the eth0 batch
		// before it: the stream is in order per device only.
		agent(func(w *wire.Writer) {
			_ = devicePacketsFrame(w, 0, 10, 40, 70)
			_ = devicePacketsFrame(w, 1, 20, 30, 50)
			_ = devicePacketsFrame(w, 0, 80)
			_ = devicePacketsFrame(w, 1, 60, 90)
		}),
		agent(func(w *wire.Writer) {
			_ = devicePacketsFrame(w, 1, 15, 35)
			_ = devicePacketsFrame(w, 0, 5, 25, 45, 65)
		}))
	for i, tg := range targets {
		app := tg.(AppInstance)
		app.ProcessType = "web"
		targets[i] = app
	}
	req := request(targets)
	req.Devices = []string{"eth0", "lo"}
	req.Format = FormatPcapng
	sess, failed := Start(context.Background(), agents, req, Options{BufferBytes: 1 << 20})
	if len(failed) != 0 {
		t.Fatalf("failed %v", failed)
	}
	var out bytes.Buffer
	res := sess.Run(context.Background(), &out, func() error { return nil }, noStop())
	if res.Packets != 15 || res.Dropped != (Drops{Kernel: 6, Agent: 2}) {
		t.Fatalf("%+v", res)
	}
	r, ts, ifaces := readPcapng(t, out.Bytes())
	if want := []int64{5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 60, 65, 70, 80, 90}; !slices.Equal(ts, want) {
		t.Fatalf("timestamps %v, want %v", ts, want)
	}
	// Interfaces: 0/eth0, 0/lo, 1/eth0, 1/lo.
	if want := []int{2, 0, 3, 1, 2, 1, 3, 0, 2, 1, 1, 2, 0, 0, 1}; !slices.Equal(ifaces, want) {
		t.Fatalf("interfaces %v, want %v", ifaces, want)
	}
	if r.NInterfaces() != 4 {
		t.Fatalf("%d interfaces", r.NInterfaces())
	}
	for i, want := range []struct{ name, device string }{{"app/0/eth0", "eth0"}, {"app/0/lo", "lo"}, {"app/1/eth0", "eth0"}, {"app/1/lo", "lo"}} {
		intf, _ := r.Interface(i)
		if intf.Name != want.name {
			t.Errorf("interface %d named %q, want %q", i, intf.Name, want.name)
		}
		index := strings.Split(want.name, "/")[1]
		for _, part := range []string{"app app (guid)", "instance " + index, "process web", "cell 10.0.0.", "device " + want.device, "container handle-eth0"} {
			if !strings.Contains(intf.Description, part) {
				t.Errorf("interface %d description %q lacks %q", i, intf.Description, part)
			}
		}
		wantDropped := map[string]uint64{"eth0": 1, "lo": 3}[want.device]
		if intf.Statistics.PacketsDropped != wantDropped {
			t.Errorf("interface %s statistics %+v, want %d dropped", want.name, intf.Statistics, wantDropped)
		}
	}
	if app := r.SectionInfo().Application; app != "pcap-server-api "+buildinfo.Version() {
		t.Errorf("section application %q", app)
	}
}

// A device the container lacks is an error of its instance that names
// it; the other devices capture. An instance whose devices all fail is an
// error like any other.
func TestMissingDeviceIsAnInstanceError(t *testing.T) {
	noDevice := &wire.Error{Code: wire.ErrNoSuchDevice, Message: "no such device"}
	agents, targets := agentsFor(t,
		func(t *testing.T, req *wire.CaptureRequest, r *wire.Reader, w *wire.Writer) {
			_ = w.WriteMessage(startedDevices(req, map[string]*wire.Error{"nosuch0": noDevice}))
			_ = devicePacketsFrame(w, 0, 1, 2)
			_ = w.WriteMessage(&wire.End{Reason: wire.EndDuration})
		},
		func(t *testing.T, req *wire.CaptureRequest, r *wire.Reader, w *wire.Writer) {
			_ = w.WriteMessage(&wire.Error{Code: wire.ErrNoSuchDevice, Message: "device eth0: gone; device nosuch0: gone"})
		})
	req := request(targets)
	req.Devices = []string{"eth0", "nosuch0"}
	req.Format = FormatPcapng
	sess, failed := Start(context.Background(), agents, req, Options{BufferBytes: 1 << 20})
	if sess == nil || len(failed) != 2 {
		t.Fatalf("failed %v", failed)
	}
	if h := FormatInstanceErrors(failed); !strings.Contains(h, "0: device nosuch0: no such device") || !strings.Contains(h, "1: device eth0: gone") {
		t.Fatalf("header %q", h)
	}
	if failed[0].Status != http.StatusBadRequest {
		t.Fatalf("status %d", failed[0].Status)
	}
	var out bytes.Buffer
	res := sess.Run(context.Background(), &out, func() error { return nil }, noStop())
	r, ts, _ := readPcapng(t, out.Bytes())
	intf, _ := r.Interface(0)
	if res.Packets != 2 || len(ts) != 2 || r.NInterfaces() != 1 || intf.Name != "app/0/eth0" {
		t.Fatalf("%d packets, %d interfaces, first %q", len(ts), r.NInterfaces(), intf.Name)
	}
}

// The shape of a stream is checked: plain Packets frames on a stream of
// several devices, or a device that did not start, break the instance.
func TestDeviceFramesAreChecked(t *testing.T) {
	for name, send := range map[string]func(w *wire.Writer){
		"plain packets":      func(w *wire.Writer) { _ = packetsFrame(w, 1) },
		"device not started": func(w *wire.Writer) { _ = devicePacketsFrame(w, 1, 1) },
		"device beyond":      func(w *wire.Writer) { _ = devicePacketsFrame(w, 3, 1) },
		"empty":              func(w *wire.Writer) { _ = w.WriteFrame(wire.TypeDevicePackets, nil) },
	} {
		t.Run(name, func(t *testing.T) {
			agents, targets := agentsFor(t, func(t *testing.T, req *wire.CaptureRequest, r *wire.Reader, w *wire.Writer) {
				_ = w.WriteMessage(startedDevices(req, map[string]*wire.Error{"lo": {Code: wire.ErrNoSuchDevice, Message: "down"}}))
				send(w)
				waitStop(r)
			})
			req := request(targets)
			req.Devices = []string{"eth0", "lo"}
			req.Format = FormatPcapng
			sess, _ := Start(context.Background(), agents, req, Options{BufferBytes: 1 << 20})
			res := sess.Run(context.Background(), &bytes.Buffer{}, func() error { return nil }, noStop())
			if res.Reason != wire.EndError || !strings.Contains(res.Instances[0].Message, "malformed") {
				t.Fatalf("%+v", res)
			}
		})
	}
}

// An agent of protocol version 1 captures one device: asked for several,
// its instance fails, saying so; a capture of one device still works
// with it (the request keeps version 1's shape).
func TestSeveralDevicesNeedAgentsOfVersion2(t *testing.T) {
	agents, targets := agentsFor(t, func(t *testing.T, req *wire.CaptureRequest, r *wire.Reader, w *wire.Writer) {
		if req.Devices != nil {
			t.Errorf("a single-device request carries devices %v", req.Devices)
		}
		_ = w.WriteMessage(&wire.Started{LinkType: 1, Snaplen: req.Snaplen, Device: req.Device})
		_ = packetsFrame(w, 1)
		_ = w.WriteMessage(&wire.End{Reason: wire.EndDuration})
	})
	for _, a := range agents {
		a.version = 1
	}
	req := request(targets)
	req.Devices = []string{"eth0", "lo"}
	req.Format = FormatPcapng
	if sess, failed := Start(context.Background(), agents, req, Options{BufferBytes: 1 << 20}); sess != nil || len(failed) != 1 ||
		failed[0].Status != http.StatusBadGateway || !strings.Contains(failed[0].Message, "too old") {
		t.Fatalf("failed %v", failed)
	}
	req.Devices = []string{"lo"}
	sess, failed := Start(context.Background(), agents, req, Options{BufferBytes: 1 << 20})
	if sess == nil {
		t.Fatalf("one device: %v", failed)
	}
	var out bytes.Buffer
	res := sess.Run(context.Background(), &out, func() error { return nil }, noStop())
	r, _, _ := readPcapng(t, out.Bytes())
	intf, _ := r.Interface(0)
	if res.Packets != 1 || intf.Name != "app/0" || !strings.Contains(intf.Description, "device lo") {
		t.Fatalf("%d packets, interface %q %q", res.Packets, intf.Name, intf.Description)
	}
}

func TestSeveralDevicesNeedPcapng(t *testing.T) {
	agents, targets := agentsFor(t, func(t *testing.T, req *wire.CaptureRequest, r *wire.Reader, w *wire.Writer) {
		t.Error("an agent was asked")
	})
	req := request(targets)
	req.Devices = []string{"eth0", "lo"}
	if sess, failed := Start(context.Background(), agents, req, Options{}); sess != nil || len(failed) != 1 || !strings.Contains(failed[0].Message, "pcapng") {
		t.Fatalf("failed %v", failed)
	}
}
