package capture

import (
	"encoding/binary"
	"math"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudfoundry/pcap-server-release/wire"
)

// frame is one Packets frame of an instance, held until its records are
// written. The records stay as the agent sent them: they were checked on
// arrival and are encoded for the client only when written.
type frame struct {
	buf     []byte // wire records
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

// Frame buffers come in power-of-two size classes from 4 KiB up to the
// largest frame, so that they can be reused whatever size agents send.
const (
	minClass   = 12
	maxClass   = 20 // wire.MaxPayload
	numClasses = maxClass - minClass + 1
	// frameOverhead is what the API holds per queued frame besides its
	// buffer: the frame itself and its queue slot.
	frameOverhead = 128
)

func classOf(n int) int {
	return max(minClass, bits.Len(uint(max(n, 1)-1))) - minClass
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
	cost := int64(1)<<(class+minClass) + frameOverhead
	if p.used.Add(cost) > p.budget {
		p.used.Add(-cost)
		return nil
	}
	f, _ := p.pools[class].Get().(*frame)
	if f == nil {
		f = &frame{buf: make([]byte, 1<<(class+minClass)), class: class}
	}
	f.buf = f.buf[:n]
	f.off, f.left = 0, 0
	return f
}

// put returns a frame to the pool and its memory to the budget.
func (p *framePool) put(f *frame) {
	p.used.Add(-(int64(1)<<(f.class+minClass) + frameOverhead))
	p.pools[f.class].Put(f)
}

// inbox is where the stream readers hand frames to the writing loop.
type inbox struct {
	mu     sync.Mutex
	frames [][]*frame
	ended  []bool
	wake   chan struct{}
}

func newInbox(instances int) *inbox {
	return &inbox{frames: make([][]*frame, instances), ended: make([]bool, instances), wake: make(chan struct{}, 1)}
}

// push delivers an instance's frame.
func (b *inbox) push(inst int, f *frame) {
	b.mu.Lock()
	b.frames[inst] = append(b.frames[inst], f)
	b.mu.Unlock()
	b.signal()
}

// end says an instance will deliver nothing more.
func (b *inbox) end(inst int) {
	b.mu.Lock()
	b.ended[inst] = true
	b.mu.Unlock()
	b.signal()
}

func (b *inbox) signal() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// takeInto moves what arrived into the merger.
func (b *inbox) takeInto(m *merger) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, fs := range b.frames {
		for _, f := range fs {
			m.add(i, f)
		}
		clear(fs)
		b.frames[i] = fs[:0]
		if b.ended[i] {
			m.end(i)
		}
	}
}

// merger orders the queued frames of several instances by timestamp, as
// far as buffering allows. It belongs to the writing loop.
//
// Each instance's packets arrive in order. The oldest queued packet is
// safe to write once every instance still running has a packet queued
// (none of them can still deliver an older one), or once its frame has
// waited hold: an idle instance must not stall the others for long. With
// one instance every packet is safe at once.
//
// Instances with queued packets sit in a heap by the timestamp of their
// next packet, so that choosing the next packet costs O(log N), and
// consecutive packets of one instance are written as a run.
type merger struct {
	hold   time.Duration
	queues []fifo[*frame]
	ended  []bool
	heads  instanceHeap
	// headTime is, by instance, the timestamp of its next queued packet.
	headTime []int64
	// idle counts the running instances with nothing queued: while there
	// is one, a packet waits for its hold.
	idle int
}

func newMerger(instances int, hold time.Duration) *merger {
	m := &merger{
		hold:     hold,
		queues:   make([]fifo[*frame], instances),
		ended:    make([]bool, instances),
		headTime: make([]int64, instances),
		idle:     instances,
	}
	m.heads.pos = make([]int, instances)
	for i := range m.heads.pos {
		m.heads.pos[i] = -1
	}
	m.heads.key = m.headTime
	return m
}

func (m *merger) add(inst int, f *frame) {
	q := &m.queues[inst]
	q.push(f)
	if q.len() == 1 {
		m.headTime[inst] = f.headTime()
		m.heads.push(inst)
		if !m.ended[inst] {
			m.idle--
		}
	}
}

func (m *merger) end(inst int) {
	if m.ended[inst] {
		return
	}
	m.ended[inst] = true
	if m.queues[inst].len() == 0 {
		m.idle--
	}
}

// mergeRun is what may be written next: the records of frame f of
// instance inst from its next one on, while their timestamp is at most
// until.
type mergeRun struct {
	inst  int
	f     *frame
	until int64
}

// next returns the run to write now. Without one, it says how long until
// the oldest waiting frame's hold expires (0: nothing is waiting).
func (m *merger) next(now time.Time) (run mergeRun, wait time.Duration, ok bool) {
	if m.heads.len() == 0 {
		return mergeRun{}, 0, false
	}
	inst := m.heads.min()
	f := m.queues[inst].front()
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
	return mergeRun{inst: inst, f: f, until: until}, 0, true
}

// written updates the order after records of inst were written; a frame
// with no records left is returned to release.
func (m *merger) written(inst int, release func(*frame)) {
	q := &m.queues[inst]
	if f := q.front(); f.left == 0 {
		q.pop()
		release(f)
	}
	if q.len() == 0 {
		m.heads.remove(inst)
		if !m.ended[inst] {
			m.idle++
		}
		return
	}
	m.headTime[inst] = q.front().headTime()
	m.heads.fix(inst)
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

// done reports whether every instance has ended and nothing is queued.
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

// instanceHeap is a binary min-heap of instance indices by key.
type instanceHeap struct {
	items []int
	pos   []int   // by instance: its index in items, -1 when absent
	key   []int64 // by instance
}

func (h *instanceHeap) len() int { return len(h.items) }
func (h *instanceHeap) min() int { return h.items[0] }

// second is the instance with the second smallest key; len must be > 1.
func (h *instanceHeap) second() int {
	if len(h.items) > 2 && h.key[h.items[2]] < h.key[h.items[1]] {
		return h.items[2]
	}
	return h.items[1]
}

func (h *instanceHeap) contains(inst int) bool { return h.pos[inst] >= 0 }

func (h *instanceHeap) push(inst int) {
	h.items = append(h.items, inst)
	h.pos[inst] = len(h.items) - 1
	h.up(len(h.items) - 1)
}

func (h *instanceHeap) remove(inst int) {
	i := h.pos[inst]
	last := len(h.items) - 1
	h.swap(i, last)
	h.items = h.items[:last]
	h.pos[inst] = -1
	if i < last {
		h.fixAt(i)
	}
}

// fix restores the order after inst's key changed.
func (h *instanceHeap) fix(inst int) { h.fixAt(h.pos[inst]) }

func (h *instanceHeap) fixAt(i int) {
	if !h.down(i) {
		h.up(i)
	}
}

func (h *instanceHeap) less(i, j int) bool { return h.key[h.items[i]] < h.key[h.items[j]] }

func (h *instanceHeap) swap(i, j int) {
	h.items[i], h.items[j] = h.items[j], h.items[i]
	h.pos[h.items[i]] = i
	h.pos[h.items[j]] = j
}

func (h *instanceHeap) up(i int) {
	for i > 0 {
		parent := (i - 1) / 2
		if !h.less(i, parent) {
			return
		}
		h.swap(i, parent)
		i = parent
	}
}

func (h *instanceHeap) down(i int) bool {
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
