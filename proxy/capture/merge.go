package capture

import (
	"encoding/binary"
	"math"
	"math/bits"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudfoundry/pcap-server-release/wire"
)

// frame is one Packets (or DevicePackets) frame of a source, held until
// its records are written. The records stay as the agent sent them: they
// were checked on arrival and are encoded for the client only when
// written.
type frame struct {
	buf     []byte // the frame's payload: wire records, after a device index in a DevicePackets frame
	off     int    // offset of the next record
	left    int    // records not written yet
	arrived time.Time
	class   int // size class of buf
}

// head is the header of the frame's next record, which was checked on
// arrival.
func (f *frame) head() wire.Record {
	b := f.buf[f.off : f.off+wire.RecordHeaderSize]
	return wire.Record{
		Timestamp: int64(binary.BigEndian.Uint64(b)),
		CapLen:    int(binary.BigEndian.Uint32(b[8:])),
		Length:    int(binary.BigEndian.Uint32(b[12:])),
	}
}

// headTime is the timestamp of the frame's next record.
func (f *frame) headTime() int64 {
	return int64(binary.BigEndian.Uint64(f.buf[f.off:]))
}

// Frame buffers come in size classes from 4 KiB up to the largest frame,
// four to a power of two (4, 5, 6, 7 KiB, 8, 10, 12, 14 KiB, ...), so that
// they can be reused whatever size agents send, and a buffer is at most a
// quarter larger than its frame: an agent's batch of 128 KiB and one more
// record must not count as 256 KiB against the budget.
const (
	minClassBits = 12
	maxClassBits = 20 // wire.MaxPayload
	numClasses   = (maxClassBits-minClassBits)*4 + 1
	// frameOverhead is what the API holds per queued frame besides its
	// buffer: the frame itself and its queue slot.
	frameOverhead = 128
)

// classOf is the smallest class that holds n bytes.
func classOf(n int) int {
	n = max(n, 1<<minClassBits)
	e := bits.Len(uint(n-1)) - 1 // 2^e < n <= 2^(e+1)
	step := 1 << (e - 2)         // a quarter of 2^e
	m := (n + step - 1) / step   // 5..8 quarters
	return (e-minClassBits)*4 + m - 4
}

// classSize is the buffer size of a class.
func classSize(class int) int {
	e, m := class/4+minClassBits, class%4+4
	return m << (e - 2)
}

// framePool hands out frame buffers within a capture's budget: every
// buffer counts whole, with its bookkeeping, from the moment it is read
// into until its last record is written. A frame that does not fit is not
// read into memory at all.
type framePool struct {
	budget int64
	used   atomic.Int64
	pools  [numClasses]sync.Pool
}

func newFramePool(budget int) *framePool {
	return &framePool{budget: int64(budget)}
}

// get returns a frame whose buf holds n bytes, or nil when the budget has
// no room for it.
func (p *framePool) get(n int) *frame {
	class := classOf(n)
	cost := int64(classSize(class)) + frameOverhead
	if p.used.Add(cost) > p.budget {
		p.used.Add(-cost)
		return nil
	}
	f, _ := p.pools[class].Get().(*frame)
	if f == nil {
		f = &frame{buf: make([]byte, classSize(class)), class: class}
	}
	f.buf = f.buf[:n]
	f.off, f.left = 0, 0
	return f
}

// put returns a frame to the pool and its memory to the budget.
func (p *framePool) put(f *frame) {
	p.used.Add(-(int64(classSize(f.class)) + frameOverhead))
	p.pools[f.class].Put(f)
}

// inbox is where the stream readers hand frames to the writing loop. The
// readers run from each instance's Started on, before the session knows
// which instances it keeps: frames are queued with their source, and the
// loop finds the source's id (the merger's and pcapng's) when it takes
// them.
type inbox struct {
	mu     sync.Mutex
	frames []sourced
	ended  []*source
	wake   chan struct{}
}

// sourced is a frame with its source.
type sourced struct {
	src *source
	f   *frame
}

func newInbox() *inbox {
	return &inbox{wake: make(chan struct{}, 1)}
}

// push delivers a source's frame.
func (b *inbox) push(src *source, f *frame) {
	b.mu.Lock()
	b.frames = append(b.frames, sourced{src, f})
	b.mu.Unlock()
	b.signal()
}

// end says the instance's sources will deliver nothing more.
func (b *inbox) end(inst *instance) {
	b.mu.Lock()
	for _, src := range inst.sources {
		if src != nil {
			b.ended = append(b.ended, src)
		}
	}
	b.mu.Unlock()
	b.signal()
}

// discard releases the queued frames of an instance the session dropped.
func (b *inbox) discard(inst *instance, release func(*frame)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.frames = slices.DeleteFunc(b.frames, func(sf sourced) bool {
		if sf.src.inst == inst {
			release(sf.f)
			return true
		}
		return false
	})
}

func (b *inbox) signal() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// takeInto moves what arrived into the merger; frames of sources the
// session does not have (an instance it dropped) go to release.
func (b *inbox) takeInto(m *merger, release func(*frame)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, sf := range b.frames {
		if sf.src.id < 0 {
			release(sf.f)
			continue
		}
		m.add(sf.src.id, sf.f)
	}
	clear(b.frames)
	b.frames = b.frames[:0]
	for _, src := range b.ended {
		if src.id >= 0 {
			m.end(src.id)
		}
	}
	clear(b.ended)
	b.ended = b.ended[:0]
}

// merger orders the queued frames of several sources by timestamp, as
// far as buffering allows. It belongs to the writing loop. A source is
// one device of one instance: an instance's stream interleaves the
// batches of its devices, but each device's packets are in order.
//
// Each source's packets arrive in order. The oldest queued packet is
// safe to write once every source still running has a packet queued
// (none of them can still deliver an older one), or once its frame has
// waited hold: an idle source must not stall the others for long. With
// one source every packet is safe at once.
//
// Sources with queued packets sit in a heap by the timestamp of their
// next packet, so that choosing the next packet costs O(log N), and
// consecutive packets of one source are written as a run.
type merger struct {
	hold   time.Duration
	queues []fifo[*frame]
	ended  []bool
	heads  sourceHeap
	// headTime is, by source, the timestamp of its next queued packet.
	headTime []int64
	// idle counts the running sources with nothing queued: while there
	// is one, a packet waits for its hold.
	idle int
}

func newMerger(sources int, hold time.Duration) *merger {
	m := &merger{
		hold:     hold,
		queues:   make([]fifo[*frame], sources),
		ended:    make([]bool, sources),
		headTime: make([]int64, sources),
		idle:     sources,
	}
	m.heads.pos = make([]int, sources)
	for i := range m.heads.pos {
		m.heads.pos[i] = -1
	}
	m.heads.key = m.headTime
	return m
}

func (m *merger) add(src int, f *frame) {
	q := &m.queues[src]
	q.push(f)
	if q.len() == 1 {
		m.headTime[src] = f.headTime()
		m.heads.push(src)
		if !m.ended[src] {
			m.idle--
		}
	}
}

func (m *merger) end(src int) {
	if m.ended[src] {
		return
	}
	m.ended[src] = true
	if m.queues[src].len() == 0 {
		m.idle--
	}
}

// mergeRun is what may be written next: the records of frame f of
// source src from its next one on, while their timestamp is at most
// until.
type mergeRun struct {
	src   int
	f     *frame
	until int64
}

// next returns the run to write now. Without one, it says how long until
// the oldest waiting frame's hold expires (0: nothing is waiting).
func (m *merger) next(now time.Time) (run mergeRun, wait time.Duration, ok bool) {
	if m.heads.len() == 0 {
		return mergeRun{}, 0, false
	}
	src := m.heads.min()
	f := m.queues[src].front()
	if m.idle > 0 {
		// Order comes first: a younger packet whose hold has expired
		// still waits behind this one.
		if wait := f.arrived.Add(m.hold).Sub(now); wait > 0 {
			return mergeRun{}, wait, false
		}
	}
	until := int64(math.MaxInt64)
	if m.heads.len() > 1 {
		until = m.headTime[m.heads.second()]
	}
	return mergeRun{src: src, f: f, until: until}, 0, true
}

// written updates the order after records of src were written; a frame
// with no records left is returned to release.
func (m *merger) written(src int, release func(*frame)) {
	q := &m.queues[src]
	if f := q.front(); f.left == 0 {
		q.pop()
		release(f)
	}
	if q.len() == 0 {
		m.heads.remove(src)
		if !m.ended[src] {
			m.idle++
		}
		return
	}
	m.headTime[src] = q.front().headTime()
	m.heads.fix(src)
}

// discardAll releases every queued frame (the capture writes no more).
func (m *merger) discardAll(release func(*frame)) {
	for i := range m.queues {
		for m.queues[i].len() > 0 {
			release(m.queues[i].pop())
		}
		if m.heads.contains(i) {
			m.heads.remove(i)
			if !m.ended[i] {
				m.idle++
			}
		}
	}
}

// done reports whether every source has ended and nothing is queued.
func (m *merger) done() bool {
	if m.heads.len() > 0 {
		return false
	}
	for _, e := range m.ended {
		if !e {
			return false
		}
	}
	return true
}

// fifo is a queue that keeps memory proportional to what it holds, also
// when it never runs empty.
type fifo[T any] struct {
	items []T
	head  int
}

func (f *fifo[T]) len() int { return len(f.items) - f.head }
func (f *fifo[T]) front() T { return f.items[f.head] }
func (f *fifo[T]) push(v T) { f.items = append(f.items, v) }
func (f *fifo[T]) pop() (v T) {
	var zero T
	v = f.items[f.head]
	f.items[f.head] = zero
	f.head++
	switch {
	case f.head == len(f.items):
		f.items, f.head = f.items[:0], 0
	case f.head > 64 && f.head > len(f.items)/2:
		n := copy(f.items, f.items[f.head:])
		clear(f.items[n:])
		f.items, f.head = f.items[:n], 0
	}
	return v
}

// sourceHeap is a binary min-heap of source indices by key.
type sourceHeap struct {
	items []int
	pos   []int   // by source: its index in items, -1 when absent
	key   []int64 // by source
}

func (h *sourceHeap) len() int { return len(h.items) }
func (h *sourceHeap) min() int { return h.items[0] }

// second is the source with the second smallest key; len must be > 1.
func (h *sourceHeap) second() int {
	if len(h.items) > 2 && h.key[h.items[2]] < h.key[h.items[1]] {
		return h.items[2]
	}
	return h.items[1]
}

func (h *sourceHeap) contains(src int) bool { return h.pos[src] >= 0 }

func (h *sourceHeap) push(src int) {
	h.items = append(h.items, src)
	h.pos[src] = len(h.items) - 1
	h.up(len(h.items) - 1)
}

func (h *sourceHeap) remove(src int) {
	i := h.pos[src]
	last := len(h.items) - 1
	h.swap(i, last)
	h.items = h.items[:last]
	h.pos[src] = -1
	if i < last {
		h.fixAt(i)
	}
}

// fix restores the order after src's key changed.
func (h *sourceHeap) fix(src int) { h.fixAt(h.pos[src]) }

func (h *sourceHeap) fixAt(i int) {
	if !h.down(i) {
		h.up(i)
	}
}

func (h *sourceHeap) less(i, j int) bool { return h.key[h.items[i]] < h.key[h.items[j]] }

func (h *sourceHeap) swap(i, j int) {
	h.items[i], h.items[j] = h.items[j], h.items[i]
	h.pos[h.items[i]] = i
	h.pos[h.items[j]] = j
}

func (h *sourceHeap) up(i int) {
	for i > 0 {
		parent := (i - 1) / 2
		if !h.less(i, parent) {
			return
		}
		h.swap(i, parent)
		i = parent
	}
}

func (h *sourceHeap) down(i int) bool {
	start := i
	for {
		small := i
		if l := 2*i + 1; l < len(h.items) && h.less(l, small) {
			small = l
		}
		if r := 2*i + 2; r < len(h.items) && h.less(r, small) {
			small = r
		}
		if small == i {
			return i > start
		}
		h.swap(i, small)
		i = small
	}
}
