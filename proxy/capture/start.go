// Package capture runs one capture for the API: it opens a stream to the
// agent of every requested instance, merges what they send into one pcap
// or pcapng stream and decides when and why the capture ends.
package capture

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudfoundry/pcap-server-release/proxy/apimetrics"
	"github.com/cloudfoundry/pcap-server-release/proxy/tunnel"
	"github.com/cloudfoundry/pcap-server-release/wire"
)

// Request is a capture as the client asked for it, within the limits.
type Request struct {
	CaptureID string
	Targets   []Target
	// Devices are captured in every instance: one (eth0 by default), or
	// up to wire.MaxDevices, which needs pcapng and agents of protocol
	// version 2.
	Devices []string
	Filter  string
	Snaplen int
	// Duration bounds the capture; with Deadline set it ends at Deadline
	// instead, counting the time the request took to start (the gorouter
	// counts it too).
	Duration   time.Duration
	Deadline   time.Time
	MaxPackets uint64
	MaxBytes   int64
	Format     Format
	// Owner is who asked (the token's subject): the one who may stop it
	// through another replica, besides admins.
	Owner string
}

// Agents finds agent sessions by cell IP: the tunnel registry.
type Agents interface {
	Lookup(ip netip.Addr) (Agent, bool)
}

// Agent is one agent session, as the capture uses it.
type Agent interface {
	// Open opens a capture stream; tunnel.ErrAgentDraining says the agent
	// is shutting down.
	Open(ctx context.Context) (net.Conn, error)
	// TryAcquire counts a capture against limit; Release undoes it.
	TryAcquire(limit int) bool
	Release()
	// Speaks reports whether the session's protocol version is at least v.
	Speaks(v int) bool
	// Identity is the VM identity the agent said hello with (version 3);
	// nil without one.
	Identity() *wire.BoshInstance
}

// limitedOpener is an Agent whose capture streams can count against the
// capture's tunnel.Unread (the tunnel's agents do); the streams of other
// agents are bounded by their transport alone.
type limitedOpener interface {
	OpenLimited(ctx context.Context, unread *tunnel.Unread) (net.Conn, error)
}

// Options are the API's settings for captures.
type Options struct {
	// PerAgentLimit caps the captures one agent runs through this API.
	PerAgentLimit int
	// BufferBytes bounds the packets held for a slow client or for
	// ordering; beyond it packets are dropped and counted.
	BufferBytes int
	Logger      *slog.Logger
	Metrics     *apimetrics.Metrics
	// StatsInterval is how often a pcapng stream gets interface
	// statistics; 0 means every 5 seconds.
	StatsInterval time.Duration
	// StopTimeout bounds the wait for agents to drain and end after a
	// stop; 0 means 15 seconds.
	StopTimeout time.Duration
}

const (
	// startTimeout bounds the wait for an agent's Started or Error: it
	// includes the container lookup on the cell.
	startTimeout = 15 * time.Second
	// defaultStopTimeout bounds the wait for agents to drain and end after
	// Stop: a full agent queue must get through a slow tunnel.
	defaultStopTimeout = 15 * time.Second
	// holdTime is how long a packet may wait for the other instances'
	// packets to be ordered with: several agent read timeouts.
	holdTime = 250 * time.Millisecond
)

// remaining is how long the capture may still run; 0 means no bound.
func (r *Request) remaining() time.Duration {
	if r.Deadline.IsZero() {
		return r.Duration
	}
	// At least a millisecond: zero would mean no bound to an agent.
	return max(time.Until(r.Deadline), time.Millisecond)
}

// InstanceError says why one instance could not be captured.
type InstanceError struct {
	// Instance is the target's Instance(): "2", "router/0".
	Instance string
	Status   int
	Message  string
}

func (e *InstanceError) Error() string { return fmt.Sprintf("instance %s: %s", e.Instance, e.Message) }

// instance is one running stream.
type instance struct {
	target  Target
	agent   Agent
	stream  net.Conn
	r       *wire.Reader
	w       *wire.Writer
	started *wire.Started
	// buf is the instance's one buffer of its own: its reader reads
	// control frames into it and discards through it the frames the
	// capture's budget has no room for.
	buf []byte
	// aborted is set when the instance is dropped after it started:
	// its reader then records nothing.
	aborted atomic.Bool
	// devices are the devices asked for; tagged says the stream carries
	// several (DevicePackets frames, per-device counters).
	devices []string
	tagged  bool
	// sources are the instance's started devices by their index in
	// devices; nil for a device that did not start.
	sources [wire.MaxDevices]*source
	// deviceErrs say why devices did not start.
	deviceErrs []*InstanceError

	mu    sync.Mutex
	stats wire.Stats
	end   *wire.End // nil until the agent sent End
	err   error     // why the stream broke, if it did
	endAt time.Time
	// final says stats are the agent's final counters, from its End;
	// otherwise they are the last periodic ones, a lower bound.
	final bool
	// countsUnknown says why the final counters are missing, once the
	// capture has ended without them.
	countsUnknown string
}

// source is one device of a running instance: the merger orders each on
// its own, and pcapng gives each its own interface.
type source struct {
	// id is the merger's and pcapng's id of the source, -1 until the
	// session has it.
	id       int
	inst     *instance
	dev      int // index in the instance's devices
	device   string
	linkType int
	// apiDrop counts the packets dropped for this source because the
	// capture's buffer was full.
	apiDrop atomic.Uint64
}

// Session is a started capture: every instance has answered and at least
// one has started.
//
// What the API holds for a capture is bounded here. Every instance's
// stream is read from its Started on (not from the response on, which
// waits for the slowest instance), into frames that count against
// Options.BufferBytes (framePool); a frame the budget has no room for is
// read through the instance's small buffer, checked, counted as dropped
// and never held. What yamux has received for the capture and its readers
// have not read yet counts against the capture's tunnel.Unread (unreadLimit):
// yamux would otherwise hold up to a stream window (1 MiB) per
// instance, whatever the agents; and yamux's buffers are kept between
// frames by no more streams than fit in a quarter of the budget
// (keptBuffers). Besides these, each instance holds its buffer
// (readBuffer), a control frame while it is read (at most
// wire.MaxControlPayload) and its goroutine.
type Session struct {
	req       Request
	opts      Options
	log       *slog.Logger
	instances []*instance
	sources   []*source // every instance's started devices, in instance and device order

	frames  *framePool
	unread  *tunnel.Unread
	inbox   *inbox
	readers sync.WaitGroup // stream readers and stop senders

	// lastEnd is the reason of the instance that ended last.
	endMu   sync.Mutex
	lastEnd wire.EndReason
	// stoppedByAgent is set when an agent ended its stream on a stop
	// request that reached it through another API replica.
	stoppedByAgent atomic.Bool
}

// readBuffer is the size of an instance's buffer: larger than an honest
// agent's control frames (a few hundred bytes), small enough to keep per
// instance.
const readBuffer = 4 << 10

// unreadLimit is what a capture may have received and not read yet, all
// its streams together: yamux's minimum stream window, whatever the API's
// window is. The readers take what arrives within microseconds; the limit
// matters when they fall behind, and holds the agents back then.
const unreadLimit = 256 << 10

// keptBuffers is how many of a capture's streams keep yamux's receive
// buffer between frames, which spares an allocation per frame: as many
// as fit in a quarter of its budget.
func keptBuffers(bufferBytes int) int { return bufferBytes / 4 / tunnel.MaxBuffer(unreadLimit) }

// Start asks the agent of every target to start capturing and waits for
// all of them to answer. It returns the running session, nil if no
// instance started, and the errors of those that did not, in target order.
func Start(ctx context.Context, agents Agents, req Request, opts Options) (*Session, []*InstanceError) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("capture_id", req.CaptureID)
	if opts.StatsInterval <= 0 {
		opts.StatsInterval = 5 * time.Second
	}
	if opts.StopTimeout <= 0 {
		opts.StopTimeout = defaultStopTimeout
	}
	if len(req.Devices) == 0 {
		req.Devices = []string{"eth0"}
	}
	insts := make([]*instance, len(req.Targets))
	errs := make([]*InstanceError, len(req.Targets))
	if len(req.Devices) > 1 && req.Format != FormatPcapng {
		// Classic pcap cannot tell the devices apart.
		for i, t := range req.Targets {
			errs[i] = &InstanceError{Instance: t.Instance(), Status: http.StatusBadRequest, Message: "several devices need format pcapng"}
		}
		return nil, errs
	}
	s := &Session{req: req, opts: opts, log: log, frames: newFramePool(opts.BufferBytes),
		unread: tunnel.NewUnread(unreadLimit, keptBuffers(opts.BufferBytes)), inbox: newInbox()}
	var wg sync.WaitGroup
	for i, t := range req.Targets {
		wg.Go(func() { insts[i], errs[i] = s.startInstance(ctx, agents, t) })
	}
	wg.Wait()

	var failed []*InstanceError
	for i := range insts {
		switch {
		case errs[i] != nil:
			failed = append(failed, errs[i])
			log.Info("instance not captured", "instance", req.Targets[i].Instance(), "status", errs[i].Status, "error", errs[i].Message)
		case req.Format == FormatPcap && len(s.instances) > 0 && insts[i].started.LinkType != s.instances[0].started.LinkType:
			// Classic pcap has one link type per file.
			insts[i].aborted.Store(true)
			insts[i].abort()
			s.inbox.discard(insts[i], s.frames.put)
			failed = append(failed, &InstanceError{Instance: req.Targets[i].Instance(), Status: http.StatusBadRequest,
				Message: fmt.Sprintf("link type %d differs from the other instances' %d: use format pcapng", insts[i].started.LinkType, s.instances[0].started.LinkType)})
		default:
			s.instances = append(s.instances, insts[i])
			failed = append(failed, insts[i].deviceErrs...)
			for _, e := range insts[i].deviceErrs {
				log.Info("device not captured", "instance", e.Instance, "status", e.Status, "error", e.Message)
			}
		}
	}
	if len(s.instances) == 0 {
		return nil, failed
	}
	for _, inst := range s.instances {
		for k := range inst.devices {
			if inst.sources[k] != nil {
				inst.sources[k].id = len(s.sources)
				s.sources = append(s.sources, inst.sources[k])
			}
		}
	}
	return s, failed
}

// startInstance opens the stream of one instance and waits for its
// answer. Once it started, its reader runs.
func (s *Session) startInstance(ctx context.Context, agents Agents, t Target) (*instance, *InstanceError) {
	req, opts := &s.req, s.opts
	fail := func(status int, format string, args ...any) (*instance, *InstanceError) {
		return nil, &InstanceError{Instance: t.Instance(), Status: status, Message: fmt.Sprintf(format, args...)}
	}
	agent, ierr := t.findAgent(agents)
	if ierr != nil {
		return nil, ierr
	}
	where := t.Where()
	if len(req.Devices) > 1 && !agent.Speaks(2) {
		return fail(http.StatusBadGateway, "the agent on %s is too old to capture several devices: capture one device at a time", where)
	}
	if !agent.TryAcquire(opts.PerAgentLimit) {
		return fail(http.StatusTooManyRequests, "the agent on %s already runs %d captures through this API replica", where, opts.PerAgentLimit)
	}
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	var stream net.Conn
	var err error
	if lo, ok := agent.(limitedOpener); ok {
		stream, err = lo.OpenLimited(ctx, s.unread)
	} else {
		stream, err = agent.Open(ctx)
	}
	if err != nil {
		agent.Release()
		if errors.Is(err, tunnel.ErrAgentDraining) {
			return fail(http.StatusServiceUnavailable, "the agent on %s is shutting down", where)
		}
		return fail(http.StatusServiceUnavailable, "cannot reach the agent on %s: %v", where, err)
	}
	inst := &instance{target: t, agent: agent, stream: stream, r: wire.NewReader(stream), w: wire.NewWriter(stream),
		buf: make([]byte, readBuffer), devices: req.Devices, tagged: len(req.Devices) > 1}
	creq := &wire.CaptureRequest{
		CaptureID:      req.CaptureID,
		Device:         req.Devices[0],
		Filter:         req.Filter,
		Snaplen:        req.Snaplen,
		DurationMillis: req.remaining().Milliseconds(),
		MaxPackets:     req.MaxPackets,
		Owner:          req.Owner,
	}
	t.fill(creq)
	if inst.tagged {
		// Version 1's shape otherwise: an older agent keeps working.
		creq.Devices = req.Devices
	}
	// The deadline also ends the wait when the client goes away.
	deadline, _ := ctx.Deadline()
	_ = stream.SetDeadline(deadline)
	stopWatch := context.AfterFunc(ctx, func() { _ = stream.SetDeadline(time.Now()) })
	defer stopWatch()
	// A writer of its own: the request can be large (the filter), and
	// inst.w keeps its buffer for the capture's life.
	if err := wire.NewWriter(stream).WriteMessage(creq); err != nil {
		inst.abort()
		return fail(http.StatusServiceUnavailable, "cannot reach the agent on %s: %v", where, err)
	}
	opened := time.Now()
	m, err := inst.readAnswer()
	_, isStarted := m.(*wire.Started)
	opts.Metrics.StreamOpened(err == nil && isStarted, time.Since(opened))
	if err != nil {
		inst.abort()
		if ctx.Err() != nil {
			return fail(http.StatusServiceUnavailable, "the agent on %s did not answer within %s", where, startTimeout)
		}
		return fail(http.StatusBadGateway, "bad answer from the agent on %s: %v", where, err)
	}
	if e, ok := m.(*wire.Error); ok {
		inst.abort()
		msg := wire.ClipMessage(e.Message)
		switch e.Code {
		case wire.ErrBadRequest, wire.ErrBadFilter, wire.ErrNoSuchDevice:
			return fail(statusOf(e.Code), "%s", msg)
		}
		// The rest is about the cell or VM: say which one, for the operator.
		return fail(statusOf(e.Code), "%s: %s", where, msg)
	}
	// Stop the watch first: once it has fired, the deadline it set stays.
	if !stopWatch() {
		inst.abort()
		return fail(http.StatusServiceUnavailable, "the request ended while the agent on %s started", where)
	}
	_ = stream.SetDeadline(time.Time{})
	inst.started = m.(*wire.Started)
	if err := inst.startDevices(); err != nil {
		inst.abort()
		return fail(http.StatusBadGateway, "bad answer from the agent on %s: %v", where, err)
	}
	// From now on the agent sends packets: they count against the
	// budget at once, whatever the other instances take to answer.
	s.readers.Go(func() { s.read(inst) })
	return inst, nil
}

// readAnswer reads the agent's Started or Error, skipping frames of types
// this version does not know.
func (i *instance) readAnswer() (wire.Message, error) {
	for {
		typ, n, err := i.r.NextHeader()
		if err != nil {
			return nil, err
		}
		if !typ.Known() {
			if err := i.r.Discard(typ, n, i.buf); err != nil {
				return nil, err
			}
			continue
		}
		if typ != wire.TypeStarted && typ != wire.TypeError {
			return nil, fmt.Errorf("unexpected %s frame", typ)
		}
		payload, err := i.readControl(typ, n)
		if err != nil {
			return nil, err
		}
		return wire.Decode(wire.Frame{Type: typ, Payload: payload})
	}
}

// readControl reads the payload of a control frame of n bytes: into the
// instance's buffer when it fits, else into one of its own, up to
// wire.MaxControlPayload. The payload is valid until the next read.
func (i *instance) readControl(typ wire.Type, n int) ([]byte, error) {
	if n > wire.MaxControlPayload {
		return nil, fmt.Errorf("%s frame of %d bytes, more than the %d a control frame may have", typ, n, wire.MaxControlPayload)
	}
	payload := i.buf
	if n > len(payload) {
		payload = make([]byte, n)
	}
	payload = payload[:n]
	if err := i.r.ReadPayload(typ, payload); err != nil {
		return nil, err
	}
	return payload, nil
}

// startDevices records which devices the agent started, and why the
// others did not, from its Started.
func (i *instance) startDevices() error {
	st := i.started
	if !i.tagged {
		i.sources[0] = &source{id: -1, inst: i, device: i.devices[0], linkType: st.LinkType}
		return nil
	}
	if len(st.Devices) != len(i.devices) {
		return fmt.Errorf("started %d devices of %d", len(st.Devices), len(i.devices))
	}
	for k, ds := range st.Devices {
		if ds.Device != i.devices[k] {
			return fmt.Errorf("started device %q in place of %s", wire.ClipMessage(ds.Device), i.devices[k])
		}
		if ds.Error != nil {
			i.deviceErrs = append(i.deviceErrs, &InstanceError{Instance: i.target.Instance(), Status: statusOf(ds.Error.Code),
				Message: fmt.Sprintf("device %s: %s", i.devices[k], wire.ClipMessage(ds.Error.Message))})
			continue
		}
		i.sources[k] = &source{inst: i, dev: k, device: i.devices[k], linkType: ds.LinkType}
	}
	if len(i.deviceErrs) == len(i.devices) {
		return errors.New("started, but none of the devices")
	}
	return nil
}

// sourceIDs are the ids of the instance's sources.
func (i *instance) sourceIDs() []int {
	var ids []int
	for _, src := range i.sources {
		if src != nil {
			ids = append(ids, src.id)
		}
	}
	return ids
}

// frameSource finds the source of a Packets or DevicePackets payload and
// where its records begin. A frame the stream's shape does not allow is
// malformed.
func (i *instance) frameSource(typ wire.Type, payload []byte) (*source, int, error) {
	if err := i.checkFrameType(typ); err != nil {
		return nil, 0, err
	}
	if typ == wire.TypePackets {
		return i.sources[0], 0, nil
	}
	k, _, err := wire.DeviceRecords(payload)
	if err != nil {
		return nil, 0, err
	}
	src, err := i.deviceSource(typ, k)
	return src, wire.DeviceHeaderSize, err
}

// checkFrameType checks that the stream's shape allows packets frames of
// type typ: DevicePackets on a stream of several devices, Packets
// otherwise.
func (i *instance) checkFrameType(typ wire.Type) error {
	switch {
	case typ == wire.TypePackets && i.tagged:
		return fmt.Errorf("%w: a packets frame without a device on a stream of several devices", wire.ErrMalformedPackets)
	case typ == wire.TypeDevicePackets && !i.tagged:
		return fmt.Errorf("%w: a device packets frame on a stream of one device", wire.ErrMalformedPackets)
	}
	return nil
}

// deviceSource is the source of the device with index k in a frame of
// type typ, which checkFrameType allowed.
func (i *instance) deviceSource(typ wire.Type, k int) (*source, error) {
	if typ == wire.TypePackets {
		return i.sources[0], nil
	}
	if k >= len(i.devices) || i.sources[k] == nil {
		return nil, fmt.Errorf("%w: packets of device index %d, which was not started", wire.ErrMalformedPackets, k)
	}
	return i.sources[k], nil
}

// counters are the source's share of the instance's counters st: its
// device's, when the agent counts per device.
func (s *source) counters(st wire.Stats) wire.Counters {
	switch {
	case !s.inst.tagged:
		return st.Counters
	case len(st.Devices) == len(s.inst.devices):
		return st.Devices[s.dev]
	}
	// An agent that does not count per device: the totals only.
	return wire.Counters{}
}

// statusOf maps an agent's error code to the HTTP status of the contract.
func statusOf(c wire.ErrorCode) int {
	switch c {
	case wire.ErrBadRequest, wire.ErrBadFilter, wire.ErrNoSuchDevice:
		return http.StatusBadRequest
	case wire.ErrContainerNotFound:
		return http.StatusNotFound
	case wire.ErrLimit:
		return http.StatusTooManyRequests
	case wire.ErrHostCaptureDisabled:
		return http.StatusForbidden
	case wire.ErrDraining:
		return http.StatusServiceUnavailable
	default: // no_netns, garden_unavailable, wrong_instance, internal: the cell or VM cannot do it
		return http.StatusBadGateway
	}
}

// abort closes the stream of an instance that will not run.
func (i *instance) abort() {
	_ = i.stream.Close()
	// Closing a stream leaves its reads waiting for the agent's close (up
	// to yamux's close timeout, 30 s): the reader of an instance that had
	// started must not keep the capture's end waiting for a frozen agent.
	_ = i.stream.SetReadDeadline(time.Now())
	i.agent.Release()
}

// StopOutcome is what came of a stop request for a capture that another
// API replica streams.
type StopOutcome struct {
	// Stopping counts the streams agents are now stopping.
	Stopping int
	// Forbidden: an agent runs the capture, for someone else.
	Forbidden bool
	// Errors are the cells that could not be asked, and why.
	Errors []error
}

// StopElsewhere asks the agents of cells to stop the capture: it runs on
// another replica, which shares nothing with this one, but every replica
// reaches every agent and the agents know their captures. An agent stops
// its streams only for the capture's owner or an admin; the replica that
// streams the capture then ends it with reason requested.
func StopElsewhere(ctx context.Context, agents Agents, cells []netip.Addr, req wire.StopCapture) StopOutcome {
	ctx, cancel := context.WithTimeout(ctx, stopAskTimeout)
	defer cancel()
	type answer struct {
		res *wire.StopResult
		err error
	}
	answers := make([]answer, len(cells))
	var wg sync.WaitGroup
	for i, cell := range cells {
		wg.Go(func() {
			res, err := askStop(ctx, agents, cell, &req)
			answers[i] = answer{res, err}
		})
	}
	wg.Wait()
	var out StopOutcome
	for _, a := range answers {
		switch {
		case a.err != nil:
			out.Errors = append(out.Errors, a.err)
		case a.res.Outcome == wire.StopStopping:
			out.Stopping += a.res.Streams
		case a.res.Outcome == wire.StopForbidden:
			out.Forbidden = true
		}
	}
	return out
}

// stopVersion is the protocol version an agent needs to understand req:
// an older one would take a host capture's stop for an app's.
func stopVersion(req *wire.StopCapture) int {
	if req.Target == wire.TargetHost {
		return wire.HostVersion
	}
	return 2
}

// stopAskTimeout bounds a stop request's round trip to the agents.
const stopAskTimeout = 10 * time.Second

func askStop(ctx context.Context, agents Agents, cell netip.Addr, req *wire.StopCapture) (*wire.StopResult, error) {
	agent, ok := agents.Lookup(cell)
	if !ok {
		return nil, fmt.Errorf("no agent connected for cell %s", cell)
	}
	if need := stopVersion(req); !agent.Speaks(need) {
		return nil, fmt.Errorf("the agent on cell %s is too old to stop a capture for another API replica", cell)
	}
	stream, err := agent.Open(ctx)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the agent on cell %s: %w", cell, err)
	}
	defer stream.Close()
	deadline, _ := ctx.Deadline()
	_ = stream.SetDeadline(deadline)
	if err := wire.NewWriter(stream).WriteMessage(req); err != nil {
		return nil, fmt.Errorf("ask the agent on cell %s: %w", cell, err)
	}
	res, err := wire.Expect[wire.StopResult](wire.NewReader(stream))
	if err != nil {
		return nil, fmt.Errorf("the agent on cell %s: %w", cell, err)
	}
	return res, nil
}
