package agent

import (
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/cloudfoundry/pcap-server-release/cellagent/capture"
	"github.com/cloudfoundry/pcap-server-release/wire"
)

// The pump selects over one channel per device in a fixed select.
const maxPumpDevices = 4

var _ [maxPumpDevices - wire.MaxDevices]struct{} // the pump must have a case per device

// devices are the captures of one stream: one per requested device, in
// the request's order, nil where the device could not be opened. A
// request without CaptureRequest.Devices (version 1's shape) has one,
// and its stream carries plain Packets frames and no per-device fields.
type devices struct {
	names []string
	// interfaces are what names[k] opened: the container's own interface
	// for eth0 (see Container.Interface), else the name itself.
	interfaces []string
	caps       []*capture.Capture
	errs       []*wire.Error // why caps[k] is nil
	tagged     bool          // the request listed several devices: answer per device

	mu sync.Mutex
	// ended is set by the first device whose capture ended; its reason
	// ends the others and the stream.
	ended        bool
	reason       wire.EndReason
	endErr       error
	endingDevice string
}

// openDevices opens every device the request names in the container's
// namespace. It fails, with the Error to send, only if none opened.
func openDevices(req *wire.CaptureRequest, c Container, o capture.Options) (*devices, *wire.Error) {
	// A list of one device is that device alone, as the API reads it.
	d := &devices{names: req.DeviceList(), tagged: len(req.Devices) > 1}
	for _, name := range d.names {
		d.interfaces = append(d.interfaces, c.device(name))
	}
	o.DeviceFrames = d.tagged
	caps, errs := capture.OpenDevices(o, d.interfaces)
	d.caps, d.errs = caps, make([]*wire.Error, len(caps))
	var failed []string
	var first *wire.Error
	for k, err := range errs {
		if err == nil {
			continue
		}
		werr := openErrorOf(err)
		d.errs[k] = werr
		if first == nil {
			first = werr
		}
		failed = append(failed, fmt.Sprintf("device %s: %s", d.names[k], werr.Message))
	}
	if len(failed) < len(d.names) {
		return d, nil
	}
	if len(d.names) == 1 {
		return nil, first
	}
	// Every device failed, mostly for the same reason (the namespace):
	// the first one's code, every one's message.
	return nil, &wire.Error{Code: first.Code, Message: strings.Join(failed, "; ")}
}

// openErrorOf types an error of capture.OpenDevices for the API.
func openErrorOf(err error) *wire.Error {
	var oe *capture.OpenError
	if errors.As(err, &oe) {
		return &wire.Error{Code: oe.Code, Message: oe.Msg}
	}
	return &wire.Error{Code: wire.ErrInternal, Message: err.Error()}
}

// started is the Started message: for a request that listed devices, one
// entry per device, started or not.
func (d *devices) started(req *wire.CaptureRequest, container string) *wire.Started {
	s := &wire.Started{Snaplen: req.Snaplen, Container: container}
	for k, c := range d.caps {
		if c != nil && s.Device == "" {
			s.LinkType, s.Device = c.LinkType(), d.names[k]
		}
		if !d.tagged {
			continue
		}
		ds := wire.DeviceStart{Device: d.names[k]}
		if c != nil {
			ds.LinkType = c.LinkType()
		} else {
			ds.Error = d.errs[k]
		}
		s.Devices = append(s.Devices, ds)
	}
	return s
}

// each runs fn on every open capture.
func (d *devices) each(fn func(*capture.Capture)) {
	for _, c := range d.caps {
		if c != nil {
			fn(c)
		}
	}
}

// Start starts every capture.
func (d *devices) Start() { d.each((*capture.Capture).Start) }

// Stop stops every capture; see capture.Capture.Stop.
func (d *devices) Stop(reason wire.EndReason, drain bool) {
	d.each(func(c *capture.Capture) { c.Stop(reason, drain) })
}

// wait waits until every capture has finished.
func (d *devices) wait() {
	d.each(func(c *capture.Capture) { <-c.Done() })
}

// deviceEnded is called when device k's capture has ended and its last
// batch is sent. The first device to end decides why the stream ends: a
// limit, an error or the container gone end the others too, draining.
func (d *devices) deviceEnded(k int) {
	<-d.caps[k].Done()
	reason, err := d.caps[k].Result()
	d.mu.Lock()
	first := !d.ended
	if first {
		d.ended, d.reason, d.endErr, d.endingDevice = true, reason, err, d.names[k]
	}
	d.mu.Unlock()
	if first {
		d.Stop(reason, true)
	}
}

// Result is why the stream ends, once every capture has ended.
func (d *devices) Result() (wire.EndReason, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.endErr != nil && len(d.names) > 1 {
		return d.reason, fmt.Errorf("device %s: %w", d.endingDevice, d.endErr)
	}
	return d.reason, d.endErr
}

// Stats are the counters of every device and their sums.
func (d *devices) Stats() wire.Stats {
	var s wire.Stats
	if d.tagged {
		s.Devices = make([]wire.Counters, len(d.caps))
	}
	for k, c := range d.caps {
		if c == nil {
			continue
		}
		cs := c.Stats()
		s.Add(cs)
		if d.tagged {
			s.Devices[k] = cs
		}
	}
	return s
}
