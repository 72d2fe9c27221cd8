// Package agent serves capture streams: it reads a capture request, finds
// the container, runs the capture and streams its packets, counters and
// end back to the API.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudfoundry/pcap-server-release/cellagent/agentmetrics"
	"github.com/cloudfoundry/pcap-server-release/cellagent/capture"
	"github.com/cloudfoundry/pcap-server-release/wire"
)

// Locator finds the container a capture request names.
type Locator interface {
	Locate(ctx context.Context, req *wire.CaptureRequest) (Container, error)
}

// Container is where to capture.
type Container struct {
	// Handle is the garden handle, for logs.
	Handle    string
	NetnsPath string
	// Interface is the container's network interface as garden names it,
	// when it names one: a capture of eth0, the default device, captures
	// it. silk names it eth0, garden's own networking w<tag><id>-1.
	Interface string
	// End, when not nil, tells when the container has ended. The capture
	// owns it and closes it.
	End EndWatch
}

// device is the interface a capture of the requested device opens.
func (c Container) device(requested string) string {
	if requested == "eth0" && c.Interface != "" {
		return c.Interface
	}
	return requested
}

// EndWatch tells when a container has ended. A capture cannot count on
// libpcap for it: with garden's own networking the container's interface
// lives on, silent, while the capture's socket holds the namespace.
type EndWatch interface {
	// Ended is closed once the container has ended.
	Ended() <-chan struct{}
	// Why says how the end was seen, once Ended is closed.
	Why() string
	// Close stops watching.
	Close()
}

// LocateError is a lookup failure the API can show to the user.
type LocateError struct {
	Code wire.ErrorCode
	Msg  string
	Err  error
}

func (e *LocateError) Error() string { return e.Msg }
func (e *LocateError) Unwrap() error { return e.Err }

// StaticLocator maps "APP_GUID/INDEX" to a network namespace path: the dev
// mode of the config, for the local demo and trials without garden.
type StaticLocator map[string]string

func (s StaticLocator) Locate(_ context.Context, req *wire.CaptureRequest) (Container, error) {
	key := req.AppGUID + "/" + strconv.Itoa(req.Index)
	path, ok := s[key]
	if !ok {
		return Container{}, &LocateError{Code: wire.ErrContainerNotFound, Msg: fmt.Sprintf("no container for app %s instance %d on this cell (dev.netns has no %q)", req.AppGUID, req.Index, key)}
	}
	return Container{Handle: key, NetnsPath: path}, nil
}

// Options configure the agent.
type Options struct {
	MaxCaptures int
	// RingBytes is the kernel ring of each capture; the agent's queue per
	// capture is as large, so that it absorbs a whole ring handed over at
	// once.
	RingBytes   int
	ReadTimeout time.Duration
	// HostCapture lets API requests capture the VM itself (target host),
	// on the devices of the agent's own network namespace, and lets a
	// container's namespace be the agent's own (dev mode).
	HostCapture bool
	// Bosh is the VM's identity; a host request must name it.
	Bosh    *wire.BoshInstance
	Locator Locator
	Logger  *slog.Logger
	Metrics *agentmetrics.Metrics
}

const (
	requestTimeout = 10 * time.Second
	statsInterval  = time.Second
	// closeWait bounds how long a finished stream waits for the API to
	// close its side.
	closeWait = 5 * time.Second
)

// Agent serves capture streams.
type Agent struct {
	opts   Options
	log    *slog.Logger
	active atomic.Int64

	// running are the captures by id, so that a stop can reach them
	// through any API replica; one capture may run several streams here
	// (instances on the same cell).
	mu      sync.Mutex
	running map[string][]*runningCapture
}

// runningCapture is one capture stream, as a stop request sees it:
// of an app, or of this VM (host) in a deployment.
type runningCapture struct {
	appGUID, owner string
	host           bool
	deployment     string
	d              *devices
}

// matches reports whether a stop request is about this stream's target.
func (rc *runningCapture) matches(req *wire.StopCapture) bool {
	if req.Target == wire.TargetHost {
		return rc.host && rc.deployment == req.Deployment
	}
	return !rc.host && rc.appGUID == req.AppGUID
}

// New returns an agent.
func New(o Options) *Agent {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Agent{opts: o, log: log, running: map[string][]*runningCapture{}}
}

// Active is the number of running captures.
func (a *Agent) Active() int64 { return a.active.Load() }

// ServeStream serves one stream the API opened: a capture, run to its
// end, or a stop request for a capture that may run on another stream.
// When ctx ends (the agent shuts down) a capture ends with
// agent_draining after draining.
func (a *Agent) ServeStream(ctx context.Context, stream net.Conn) {
	r, w := wire.NewReader(stream), wire.NewWriter(stream)
	_ = stream.SetReadDeadline(time.Now().Add(requestTimeout))
	f, err := r.NextKnown(nil)
	var m wire.Message
	if err == nil {
		m, err = wire.Decode(f)
	}
	if err != nil {
		a.log.Warn("bad stream from the API", "error", err)
		return
	}
	_ = stream.SetReadDeadline(time.Time{})
	switch m := m.(type) {
	case *wire.CaptureRequest:
		a.serveCapture(ctx, stream, r, w, m)
	case *wire.StopCapture:
		res := a.stop(m)
		a.log.Info("stop requested", "capture_id", m.CaptureID, "app_guid", m.AppGUID, "target", m.Target, "deployment", m.Deployment, "requester", m.Requester,
			"admin", m.Admin, "outcome", res.Outcome, "streams", res.Streams)
		if err := w.WriteMessage(res); err != nil {
			a.log.Warn("answer stop request", "capture_id", m.CaptureID, "error", err)
		}
	default:
		a.log.Warn("unexpected first frame from the API", "type", f.Type)
	}
}

// stop ends, draining, every stream of the capture that runs here for
// that app, if the requester owns the capture or is an admin.
func (a *Agent) stop(req *wire.StopCapture) *wire.StopResult {
	a.mu.Lock()
	var found []*runningCapture
	for _, rc := range a.running[req.CaptureID] {
		if rc.matches(req) {
			found = append(found, rc)
		}
	}
	a.mu.Unlock()
	if len(found) == 0 {
		return &wire.StopResult{Outcome: wire.StopNotFound}
	}
	for _, rc := range found {
		if !req.Admin && (rc.owner == "" || rc.owner != req.Requester) {
			return &wire.StopResult{Outcome: wire.StopForbidden}
		}
	}
	for _, rc := range found {
		rc.d.Stop(wire.EndRequested, true)
	}
	return &wire.StopResult{Outcome: wire.StopStopping, Streams: len(found)}
}

func (a *Agent) register(id string, rc *runningCapture) (unregister func()) {
	a.mu.Lock()
	a.running[id] = append(a.running[id], rc)
	a.mu.Unlock()
	return func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		rest := slices.DeleteFunc(a.running[id], func(x *runningCapture) bool { return x == rc })
		if len(rest) == 0 {
			delete(a.running, id)
		} else {
			a.running[id] = rest
		}
	}
}

// serveCapture runs one capture to its end.
func (a *Agent) serveCapture(ctx context.Context, stream net.Conn, r *wire.Reader, w *wire.Writer, req *wire.CaptureRequest) {
	log := a.log.With("capture_id", req.CaptureID, "app_guid", req.AppGUID, "index", req.Index)
	if req.Host() && req.Bosh != nil {
		log = a.log.With("capture_id", req.CaptureID, "target", wire.TargetHost, "bosh_deployment", req.Bosh.Deployment, "bosh_instance", req.Bosh.InstanceGroup+"/"+req.Bosh.ID)
	}

	d, container, werr := a.start(ctx, req, log)
	if werr != nil {
		a.opts.Metrics.Request(string(werr.Code))
		log.Info("capture refused", "code", werr.Code, "error", werr.Message)
		_ = w.WriteMessage(werr)
		return
	}
	if container.End != nil {
		defer container.End.Close()
	}
	a.opts.Metrics.Request("started")
	a.opts.Metrics.CapturesChanged(1)
	defer a.opts.Metrics.CapturesChanged(-1)
	defer a.active.Add(-1)
	// Registered before the API hears of it, so that a stop sent through
	// another replica right after the response finds it.
	rc := &runningCapture{appGUID: req.AppGUID, owner: req.Owner, host: req.Host(), d: d}
	if req.Host() {
		rc.deployment = req.Bosh.Deployment
	}
	defer a.register(req.CaptureID, rc)()
	started := d.started(req, container.Handle)
	if err := w.WriteMessage(started); err != nil {
		d.Start()
		d.Stop(wire.EndClientGone, false)
		d.wait()
		log.Warn("API gone before the capture started", "error", err)
		return
	}
	d.Start()
	log.Info("capture started", "container", container.Handle, "devices", d.names, "interfaces", d.interfaces, "filter", req.Filter, "snaplen", req.Snaplen)
	for k, e := range d.errs {
		if e != nil {
			log.Info("device not captured", "device", d.names[k], "code", e.Code, "error", e.Message)
		}
	}

	apiDone := make(chan struct{})
	go func() {
		defer close(apiDone)
		a.readAPI(r, d, log)
	}()
	stopOnShutdown := context.AfterFunc(ctx, func() { d.Stop(wire.EndAgentDraining, true) })
	defer stopOnShutdown()
	pumped := make(chan struct{})
	if end := container.End; end != nil {
		go func() {
			select {
			case <-end.Ended():
				log.Info("container ended", "container", container.Handle, "how", end.Why())
				// Drained: what libpcap holds was captured before the end.
				d.Stop(wire.EndContainerGone, true)
			case <-pumped:
			}
		}()
	}

	a.pump(w, d, log)
	close(pumped)

	reason, endErr := d.Result()
	if endErr == nil && reason == wire.EndContainerGone && container.End != nil {
		endErr = errors.New(container.End.Why())
	}
	end := &wire.End{Reason: reason, Stats: d.Stats()}
	if endErr != nil {
		end.Message = endErr.Error()
	}
	if err := w.WriteMessage(end); err != nil {
		log.Warn("could not send end of capture", "error", err)
	}
	log.Info("capture ended", "reason", reason, "error", endErr, "packets", end.Stats.Packets, "bytes", end.Stats.Bytes,
		"kernel_dropped", end.Stats.KernelDropped, "agent_dropped", end.Stats.AgentDropped)
	// Half-close, then give the API a moment to close its side before the
	// reader goroutine is cut off.
	_ = stream.Close()
	_ = stream.SetReadDeadline(time.Now().Add(closeWait))
	<-apiDone
}

// start checks limits, finds the container and opens the capture of
// every device. On failure it returns the Error to send.
func (a *Agent) start(ctx context.Context, req *wire.CaptureRequest, log *slog.Logger) (*devices, Container, *wire.Error) {
	if err := req.Validate(); err != nil {
		return nil, Container{}, &wire.Error{Code: wire.ErrBadRequest, Message: err.Error()}
	}
	if req.Host() {
		if werr := a.checkHost(req); werr != nil {
			return nil, Container{}, werr
		}
	}
	if ctx.Err() != nil {
		return nil, Container{}, &wire.Error{Code: wire.ErrDraining, Message: "the agent is shutting down"}
	}
	if n := a.active.Add(1); n > int64(a.opts.MaxCaptures) {
		a.active.Add(-1)
		return nil, Container{}, &wire.Error{Code: wire.ErrLimit, Message: fmt.Sprintf("the cell's agent already runs its maximum of %d captures", a.opts.MaxCaptures)}
	}
	fail := func(e *wire.Error) (*devices, Container, *wire.Error) {
		a.active.Add(-1)
		return nil, Container{}, e
	}
	var container Container
	if !req.Host() {
		var werr *wire.Error
		if container, werr = a.locate(ctx, req); werr != nil {
			return fail(werr)
		}
	}
	d, werr := openDevices(req, container, capture.Options{
		NetnsPath:   container.NetnsPath,
		AllowHost:   a.opts.HostCapture,
		Host:        req.Host(),
		Filter:      req.Filter,
		Snaplen:     req.Snaplen,
		RingBytes:   a.opts.RingBytes,
		ReadTimeout: a.opts.ReadTimeout,
		QueueBytes:  a.opts.RingBytes,
		MaxPackets:  req.MaxPackets,
		Duration:    req.Duration(),
	})
	if werr != nil {
		if container.End != nil {
			container.End.Close()
		}
		return fail(werr)
	}
	return d, container, nil
}

// locate finds the container of an app capture.
func (a *Agent) locate(ctx context.Context, req *wire.CaptureRequest) (Container, *wire.Error) {
	lctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	started := time.Now()
	container, err := a.opts.Locator.Locate(lctx, req)
	if err != nil {
		code, msg := wire.ErrInternal, err.Error()
		var le *LocateError
		if errors.As(err, &le) {
			code, msg = le.Code, le.Msg
		}
		a.opts.Metrics.Lookup(time.Since(started), code)
		return Container{}, &wire.Error{Code: code, Message: msg}
	}
	a.opts.Metrics.Lookup(time.Since(started), "")
	return container, nil
}

// checkHost decides whether a host request may capture this VM: the
// operator enabled host capture, and the request names this VM. The API
// has matched the VM's identity and address already; the agent checks
// again, so that a request meant for another VM never captures this one.
func (a *Agent) checkHost(req *wire.CaptureRequest) *wire.Error {
	me := a.opts.Bosh
	switch {
	case !a.opts.HostCapture:
		who := "this VM"
		if me != nil {
			who = fmt.Sprintf("VM %s (%s) of deployment %s", me.Slug(), me.ID, me.Deployment)
		}
		return &wire.Error{Code: wire.ErrHostCaptureDisabled,
			Message: fmt.Sprintf("host capture is not enabled on %s: the operator sets host_capture.enabled on its pcap-server job", who)}
	case me == nil:
		return &wire.Error{Code: wire.ErrWrongInstance,
			Message: "this agent has no BOSH identity (its config has no bosh section), so it cannot tell that it is the VM asked for"}
	case req.Bosh.ID != me.ID || req.Bosh.Deployment != me.Deployment:
		return &wire.Error{Code: wire.ErrWrongInstance,
			Message: fmt.Sprintf("asked for instance %s of deployment %s, but this agent is instance %s of deployment %s", req.Bosh.ID, req.Bosh.Deployment, me.ID, me.Deployment)}
	}
	return nil
}

// readAPI waits for Stop; the stream's end means the API is gone.
func (a *Agent) readAPI(r *wire.Reader, d *devices, log *slog.Logger) {
	for {
		f, err := r.NextKnown(func(t wire.Type) { log.Debug("skipping unknown frame", "type", t) })
		if err != nil {
			d.Stop(wire.EndClientGone, false)
			return
		}
		if f.Type != wire.TypeStop {
			log.Warn("unexpected frame from API", "type", f.Type)
			continue
		}
		m, err := wire.Decode(f)
		if err != nil {
			log.Warn("bad stop frame", "error", err)
			d.Stop(wire.EndRequested, true)
			continue
		}
		d.Stop(m.(*wire.Stop).Reason, true)
	}
}

// pump sends batches of every device and periodic counters until every
// device's capture has ended and its last batch is sent. If the stream
// fails, the captures are aborted and the rest is discarded.
func (a *Agent) pump(w *wire.Writer, d *devices, log *slog.Logger) {
	ticker := time.NewTicker(statsInterval)
	defer ticker.Stop()
	var counted wire.Stats // what the metrics have seen
	progress := func() {
		now := d.Stats()
		a.opts.Metrics.Progress(counted, now)
		counted = now
	}
	defer progress()
	broken := false
	fail := func(err error) {
		if !broken {
			broken = true
			log.Warn("capture stream broken", "error", err)
			d.Stop(wire.EndClientGone, false)
		}
	}
	// One channel per device, nil once the device has ended (and for
	// the devices a capture does not have): a select needs no allocation,
	// which a reflect.Select would.
	var batches [maxPumpDevices]<-chan *wire.Batch
	running := 0
	for k, c := range d.caps {
		if c != nil {
			batches[k] = c.Batches()
			running++
		}
	}
	for running > 0 {
		var k int
		var b *wire.Batch
		var ok bool
		select {
		case b, ok = <-batches[0]:
		case b, ok = <-batches[1]:
			k = 1
		case b, ok = <-batches[2]:
			k = 2
		case b, ok = <-batches[3]:
			k = 3
		case <-ticker.C:
			progress()
			if !broken {
				if err := w.WriteMessage(&counted); err != nil {
					fail(err)
				}
			}
			continue
		}
		if !ok {
			batches[k] = nil
			running--
			d.deviceEnded(k)
			continue
		}
		if !broken {
			if err := w.WriteBatch(b); err != nil {
				fail(err)
			}
		}
		d.caps[k].Release(b)
	}
}
