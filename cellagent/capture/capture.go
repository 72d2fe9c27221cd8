// Package capture runs one libpcap capture inside a container's network
// namespace and hands its packets over in wire batches, bounded in memory.
//
// The reader loop owns the libpcap handle. It moves what libpcap's ring
// holds into a batch in few calls (see ring.go), queues the batch for the
// consumer (the tunnel stream) once it is big or the ring is empty, and
// sleeps in Go's netpoller until the kernel hands over the next ring
// block: an idle capture costs a wakeup a second. The queue is bounded in bytes:
// when the consumer falls behind, packets are dropped and counted, never
// buffered without bound, so a slow client cannot make the agent grow on a
// cell that runs apps.
package capture

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudfoundry/pcap-server-release/cellagent/bpfcompile"
	"github.com/cloudfoundry/pcap-server-release/cellagent/libpcap"
	"github.com/cloudfoundry/pcap-server-release/cellagent/nsenter"
	"github.com/cloudfoundry/pcap-server-release/wire"
)

// Options describe one capture.
type Options struct {
	// NetnsPath is the network namespace to capture in.
	NetnsPath string
	// AllowHost permits NetnsPath to be the agent's own namespace.
	AllowHost bool
	// Host captures in the namespace of the calling thread, the agent's
	// own (a BOSH VM's host capture), instead of NetnsPath, which must
	// then be empty.
	Host    bool
	Device  string
	Filter  string
	Snaplen int
	// RingBytes is the kernel ring size (libpcap's buffer size).
	RingBytes int
	// ReadTimeout is libpcap's packet buffer timeout: a ring block is
	// handed over when full or this long after its first packet.
	ReadTimeout time.Duration
	// QueueBytes bounds the packet bytes waiting for the consumer.
	QueueBytes int
	// MaxPackets ends the capture after that many packets; 0: no limit.
	MaxPackets uint64
	// Duration ends the capture after that long; 0: no limit.
	Duration time.Duration
	// Compiler compiles Filter outside this process; nil: the default
	// budget.
	Compiler *bpfcompile.Compiler
	// DeviceFrames makes the batches DevicePackets frames of device
	// DeviceIndex: the capture is one of several devices on one stream.
	// OpenDevices sets DeviceIndex.
	DeviceFrames bool
	DeviceIndex  int
}

const (
	// flushBytes sends a batch once it holds this much: big enough that
	// frame overhead vanishes, small enough to keep latency low.
	flushBytes = 128 << 10
	// statsInterval is how often libpcap's counters are read.
	statsInterval = time.Second
	// queueSlots bounds the number of queued batches besides their bytes.
	queueSlots = 512
)

// OpenError is a capture that could not start, typed for the API.
type OpenError struct {
	Code wire.ErrorCode
	Msg  string
	Err  error
}

func (e *OpenError) Error() string { return e.Msg }
func (e *OpenError) Unwrap() error { return e.Err }

// Capture is a running capture.
type Capture struct {
	opts Options
	// handle belongs to the reader loop, which closes it; until Start,
	// to whoever opened it.
	handle   *libpcap.Handle
	ring     *ring
	linkType int
	// batchCap is every batch's buffer: a flush's worth and one more
	// record of the largest size.
	batchCap int

	out     chan *wire.Batch
	pool    sync.Pool
	queued  atomic.Int64 // buffer bytes in out and in the consumer's hands
	stopReq atomic.Pointer[stopRequest]

	packets, bytes     atomic.Uint64
	kernelDrop, ifDrop atomic.Uint64
	agentDrop          atomic.Uint64
	// wakeups counts the loop's waits, so that a test can tell an idle
	// capture sleeps.
	wakeups atomic.Uint64
	reason  wire.EndReason
	endErr  error
	done    chan struct{}
}

type stopRequest struct {
	reason wire.EndReason
	drain  bool
}

// Open enters the namespace and activates libpcap there. The returned
// capture is not reading yet: call Start.
func Open(o Options) (*Capture, error) {
	caps, errs := OpenDevices(o, []string{o.Device})
	return caps[0], errs[0]
}

// OpenDevices opens a capture of each device, entering the namespace
// once: caps[k] captures devices[k], or is nil and errs[k] (an
// *OpenError) says why. Each capture has its own kernel ring and queue of
// the sizes in o, and is started and stopped on its own.
func OpenDevices(o Options, devices []string) (caps []*Capture, errs []error) {
	caps, errs = make([]*Capture, len(devices)), make([]error, len(devices))
	failAll := func(err error) ([]*Capture, []error) {
		for k := range errs {
			errs[k] = err
		}
		return caps, errs
	}
	if o.ReadTimeout <= 0 {
		return failAll(&OpenError{Code: wire.ErrInternal, Msg: "read timeout must be positive"})
	}
	if o.Host == (o.NetnsPath != "") {
		return failAll(&OpenError{Code: wire.ErrInternal, Msg: "a capture is of the host or of a network namespace path, and of one of them"})
	}
	handles := make([]*libpcap.Handle, len(devices))
	err := inNamespace(o, func() error {
		for k, dev := range devices {
			od := o
			od.Device = dev
			handles[k], errs[k] = activate(od)
		}
		// In the namespace: the compiler child opens the devices there.
		setFilter(o, devices, handles, errs)
		return nil
	})
	if err != nil {
		for _, h := range handles {
			if h != nil {
				h.Close()
			}
		}
		if errors.Is(err, nsenter.ErrOwnNamespace) {
			return failAll(&OpenError{Code: wire.ErrNoNetns, Msg: "refusing to capture in the host's network namespace", Err: err})
		}
		return failAll(&OpenError{Code: wire.ErrNoNetns, Msg: fmt.Sprintf("cannot enter the container's network namespace: %v", err), Err: err})
	}
	for k, h := range handles {
		if h == nil {
			continue
		}
		od := o
		od.Device, od.DeviceIndex = devices[k], k
		caps[k], errs[k] = newCapture(od, h)
	}
	return caps, errs
}

// inNamespace runs fn in the namespace the capture is of: the path's,
// entered on a thread of its own, or for the host the calling thread's.
// A thread that is not locked into another namespace is in the agent's
// own (nsenter switches back or lets the thread die), and the thread
// stays locked while fn creates libpcap's sockets and forks the filter
// compiler, which inherits the thread's namespace.
func inNamespace(o Options, fn func() error) error {
	if o.Host {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		return fn()
	}
	return nsenter.Do(o.NetnsPath, o.AllowHost, fn)
}

// newCapture reads an activated handle; it closes the handle if it
// cannot.
func newCapture(o Options, h *libpcap.Handle) (*Capture, error) {
	snaplen := min(max(h.Snaplen(), o.Snaplen), wire.MaxSnaplen)
	r, err := newRing(h, o.RingBytes)
	if err != nil {
		h.Close()
		return nil, &OpenError{Code: wire.ErrInternal, Msg: fmt.Sprintf("read the capture on %s: %v", o.Device, err), Err: err}
	}
	c := &Capture{
		opts:     o,
		handle:   h,
		ring:     r,
		linkType: h.LinkType(),
		batchCap: flushBytes + wire.RecordHeaderSize + snaplen,
		out:      make(chan *wire.Batch, queueSlots),
		done:     make(chan struct{}),
	}
	if o.DeviceFrames {
		c.pool.New = func() any { return wire.NewDeviceBatch(o.DeviceIndex, c.batchCap) }
	} else {
		c.pool.New = func() any { return wire.NewBatch(c.batchCap) }
	}
	return c, nil
}

// activate runs inside the target namespace: the socket libpcap creates
// here stays in it. The filter is set afterwards (setFilter).
func activate(o Options) (*libpcap.Handle, error) {
	h, err := libpcap.Open(libpcap.Config{Device: o.Device, Snaplen: o.Snaplen, BufferBytes: o.RingBytes, Timeout: o.ReadTimeout})
	if err == nil {
		return h, nil
	}
	var ae *libpcap.ActivateError
	if !errors.As(err, &ae) {
		return nil, &OpenError{Code: wire.ErrInternal, Msg: err.Error(), Err: err}
	}
	code := wire.ErrInternal
	if ae.DeviceUnusable() {
		code = wire.ErrNoSuchDevice
	}
	return nil, &OpenError{Code: code, Msg: fmt.Sprintf("open device %s in the container: %s", o.Device, ae.Msg), Err: err}
}

// LinkType is libpcap's DLT of the capture.
func (c *Capture) LinkType() int { return c.linkType }

// Batches delivers the captured packets. It is closed when the capture has
// ended and everything it captured has been queued. The consumer must
// Release every batch once it has sent it.
func (c *Capture) Batches() <-chan *wire.Batch { return c.out }

// Release returns a batch's memory to the capture's budget.
func (c *Capture) Release(b *wire.Batch) {
	c.queued.Add(-int64(b.Cap()))
	b.Reset()
	c.pool.Put(b)
}

// Start begins reading in a goroutine of its own. It ends by itself on a
// limit or a read error, or after Stop.
func (c *Capture) Start() {
	go c.read()
}

// Stop ends the capture. With drain, the reader first collects what the
// kernel still holds (up to one read timeout: TPACKET_V3 hands a partly
// filled block over only when the timeout fires), so no packet captured
// before the stop is lost. Without drain (the consumer is gone) it ends at
// once. The first reason is the one reported.
func (c *Capture) Stop(reason wire.EndReason, drain bool) {
	next := &stopRequest{reason: reason, drain: drain}
	for {
		cur := c.stopReq.Load()
		// The first reason wins; an abort may still cut a drain short.
		if cur != nil && (!cur.drain || drain) {
			return
		}
		if cur != nil {
			next.reason = cur.reason
		}
		if c.stopReq.CompareAndSwap(cur, next) {
			c.ring.wakeUp()
			return
		}
	}
}

// Done is closed when the reader has finished and the handle is closed.
func (c *Capture) Done() <-chan struct{} { return c.done }

// Result is why the capture ended, valid after Done. err is non-nil for
// EndError and EndContainerGone and says what libpcap reported.
func (c *Capture) Result() (wire.EndReason, error) { return c.reason, c.endErr }

// Stats returns the counters so far; safe to call at any time.
func (c *Capture) Stats() wire.Counters {
	return wire.Counters{
		Packets:          c.packets.Load(),
		Bytes:            c.bytes.Load(),
		KernelDropped:    c.kernelDrop.Load(),
		InterfaceDropped: c.ifDrop.Load(),
		AgentDropped:     c.agentDrop.Load(),
	}
}

func (c *Capture) read() {
	defer close(c.done)
	defer close(c.out)
	defer c.ring.close()
	// The handle is closed before out is closed and Done fires, so that the
	// final counters are in when the consumer sends End.
	defer c.handle.Close()

	r := reader{c: c, batch: c.pool.Get().(*wire.Batch), lastStats: time.Now()}
	if c.opts.Duration > 0 {
		r.deadline = r.lastStats.Add(c.opts.Duration)
	}
	reason, err := r.loop()
	r.flush()
	c.pool.Put(r.batch)
	c.sampleStats()
	c.reason, c.endErr = reason, err
}

// reader is the state of the read loop.
type reader struct {
	c          *Capture
	batch      *wire.Batch
	captured   uint64
	deadline   time.Time
	drainUntil time.Time
	lastStats  time.Time
	gone       error // the interface vanished: the container is gone
	// When the current burst of reads began, and whether it read any.
	burstStart time.Time
	burstRead  bool
	// overflowed is set once the kernel dropped packets: pacing is over
	// for the capture.
	overflowed bool
}

func (r *reader) loop() (wire.EndReason, error) {
	c, o := r.c, &r.c.opts
	for {
		if req := c.stopReq.Load(); req != nil && !req.drain {
			return req.reason, nil
		}
		got, more, err := r.readRing()
		if o.MaxPackets > 0 && r.captured >= o.MaxPackets {
			return wire.EndPackets, nil
		}
		switch {
		case err == nil:
		case !interfaceGone(err):
			return wire.EndError, fmt.Errorf("read packets on %s: %w", o.Device, err)
		case r.gone == nil:
			// The ring still holds what arrived before the interface
			// vanished; the kernel hands it over shortly. Keep reading
			// for one drain period.
			r.gone = fmt.Errorf("capture on %s: %w", o.Device, err)
			c.Stop(wire.EndContainerGone, true)
		}
		if got && err == nil && (more || r.batch.Size() >= flushBytes) {
			// The ring may hold more.
			if r.batch.Size() >= flushBytes {
				r.flush()
			}
			continue
		}
		// The ring is empty for now: hand over what there is, then sleep
		// until the kernel hands over a block, a stop, or the next tick.
		r.flush()
		reason, done := r.tick()
		if done {
			return reason, r.gone
		}
		if r.gone != nil {
			// poll reports the dead interface at once: pace the reads.
			time.Sleep(o.ReadTimeout / 5)
			continue
		}
		r.pace()
		c.wakeups.Add(1)
		c.ring.wait(time.Now().Add(r.sleep()), r.stopPending)
		r.burstStart, r.burstRead = time.Now(), false
	}
}

// pace lets ring blocks gather while the traffic is light, so that
// bursts of reads start at most once per read timeout. Every burst costs
// the process a wakeup of Go's scheduler monitor (about a millisecond of
// polling in 20 µs steps) and a wakeup of the tunnel, the API and the
// client; a capture at a few hundred thousand packets per second would
// otherwise take a burst per ring block. A block waits no longer than it
// would have waited for the read timeout at a lower rate.
//
// The ring's view says how many blocks wait, and each block handed over
// wakes the pacing to look: reading starts as soon as an eighth of the
// ring is taken, so that a surge never finds it full. Without a view, or
// once the kernel has dropped packets (a reader short of CPU), there is
// no pacing.
func (r *reader) pace() {
	o, view := &r.c.opts, r.c.ring.view
	if view == nil || !r.burstRead || r.overflowed {
		return
	}
	// The counters of the last tick (a second at most): reading them now
	// would be a system call per burst.
	if r.overflowed = r.c.kernelDrop.Load() > 0; r.overflowed {
		return
	}
	deadline := r.burstStart.Add(o.ReadTimeout)
	enough := max(view.Blocks()/8, 1)
	for view.Ready() < enough && time.Now().Before(deadline) && !r.stopPending() {
		r.c.ring.waitHandOver(deadline, r.stopPending)
	}
}

// readRing moves what libpcap holds into the current batch. When the
// queue could not take the batch once full, the consumer is behind: the
// packets are read and dropped, and counted.
func (r *reader) readRing() (got, more bool, err error) {
	c, o := r.c, &r.c.opts
	if len(r.batch.Spare()) < c.ring.room {
		r.flush()
	}
	want := uint64(math.MaxUint64)
	if o.MaxPackets > 0 {
		want = o.MaxPackets - r.captured
	}
	discard := c.queued.Load()+int64(c.batchCap) > int64(o.QueueBytes)
	if discard {
		want = 0
	}
	n, more, err := c.ring.read(r.batch, want, max(flushBytes-r.batch.Size(), 1))
	r.burstRead = r.burstRead || n.bytes > 0
	r.captured += n.kept
	c.agentDrop.Add(n.lost)
	if discard {
		c.agentDrop.Add(n.over)
	}
	return n.kept+n.over+n.lost > 0, more, err
}

// tick handles the periodic counters, the duration limit and the end of
// a drain. It reports whether the loop must end, and why.
func (r *reader) tick() (wire.EndReason, bool) {
	now := time.Now()
	if now.Sub(r.lastStats) >= statsInterval {
		r.c.sampleStats()
		r.lastStats = now
	}
	if !r.deadline.IsZero() && !now.Before(r.deadline) {
		r.c.Stop(wire.EndDuration, true)
	}
	req := r.c.stopReq.Load()
	if req == nil {
		return "", false
	}
	if !req.drain {
		return req.reason, true
	}
	if r.drainUntil.IsZero() {
		// A ring block is handed over at most one read timeout after its
		// first packet; as much again covers scheduling.
		r.drainUntil = now.Add(2 * r.c.opts.ReadTimeout)
	}
	return req.reason, !now.Before(r.drainUntil)
}

// stopPending reports a stop the loop has not begun to act on.
func (r *reader) stopPending() bool {
	req := r.c.stopReq.Load()
	return req != nil && (!req.drain || r.drainUntil.IsZero())
}

// sleep is how long the loop may wait for packets before it has
// something else to do.
func (r *reader) sleep() time.Duration {
	now := time.Now()
	d := statsInterval - now.Sub(r.lastStats)
	for _, t := range []time.Time{r.deadline, r.drainUntil} {
		if !t.IsZero() {
			d = min(d, t.Sub(now))
		}
	}
	return max(d, time.Millisecond)
}

// flush queues the current batch. When every queue slot is taken (the
// consumer is stuck and the traffic sparse) the batch is dropped.
func (r *reader) flush() {
	b := r.batch
	if b.Count() == 0 {
		return
	}
	c := r.c
	// Once sent, the batch belongs to the consumer: read it before.
	count, size := b.Count(), b.Size()
	c.queued.Add(int64(b.Cap()))
	select {
	case c.out <- b:
		c.packets.Add(uint64(count))
		c.bytes.Add(uint64(size - count*wire.RecordHeaderSize))
		r.batch = c.pool.Get().(*wire.Batch)
	default:
		c.agentDrop.Add(uint64(count))
		c.queued.Add(-int64(b.Cap()))
		r.captured -= uint64(count) // toward the packet limit, only what went out
		b.Reset()
	}
}

// sampleStats reads libpcap's counters into the capture's.
func (c *Capture) sampleStats() {
	s, err := c.handle.Stats()
	if err != nil {
		return
	}
	c.kernelDrop.Store(s.Dropped)
	c.ifDrop.Store(s.IfDropped)
}

// interfaceGone recognises libpcap's messages for an interface that went
// away, which in a container means the container was destroyed.
func interfaceGone(err error) bool {
	msg := strings.ToLower(err.Error())
	for _, s := range []string{"went down", "disappeared", "no such device", "network is down"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}
