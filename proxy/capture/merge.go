package capture

import (
	"sync"
	"time"

	"github.com/cloudfoundry/pcap-server-release/wire"
)

// merger interleaves the packets of several instances in timestamp order,
// as far as buffering allows.
//
// Each instance's packets arrive in order. The oldest queued packet is
// safe to write once every instance still running has a packet queued
// (none of them can still deliver an older one), or once it has waited
// hold: an idle instance must not stall the others for long. With one
// instance every packet is safe at once.
//
// Readers never block on it: past budget bytes queued, packets are dropped
// and counted, so that a slow client cannot stall the tunnel streams.
type merger struct {
	hold   time.Duration
	budget int
	now    func() time.Time

	mu      sync.Mutex
	queues  []fifo
	ended   []bool
	dropped []uint64
	bytes   int
	wake    chan struct{}
}

type queued struct {
	wire.Packet
	inst    int
	arrived time.Time
}

// fifo is a queue of one instance's packets.
type fifo struct {
	items []queued
	head  int
}

func (f *fifo) len() int      { return len(f.items) - f.head }
func (f *fifo) peek() *queued { return &f.items[f.head] }
func (f *fifo) push(q queued) { f.items = append(f.items, q) }
func (f *fifo) pop() (q queued) {
	q = f.items[f.head]
	f.items[f.head] = queued{}
	f.head++
	switch {
	case f.head == len(f.items):
		f.items, f.head = f.items[:0], 0
	case f.head > 1024 && f.head > len(f.items)/2:
		// A queue that never runs empty (its instance is busy while
		// another waits out the hold) must not keep a slot for every
		// packet it ever held.
		n := copy(f.items, f.items[f.head:])
		clear(f.items[n:])
		f.items, f.head = f.items[:n], 0
	}
	return q
}

func newMerger(instances int, hold time.Duration, budget int) *merger {
	return &merger{
		hold:    hold,
		budget:  budget,
		now:     time.Now,
		queues:  make([]fifo, instances),
		ended:   make([]bool, instances),
		dropped: make([]uint64, instances),
		wake:    make(chan struct{}, 1),
	}
}

// push queues an instance's packets (their Data must stay valid until
// written) and reports how many it had to drop.
func (m *merger) push(inst int, pkts []wire.Packet) (dropped int) {
	now := m.now()
	m.mu.Lock()
	for _, p := range pkts {
		size := len(p.Data) + wire.RecordHeaderSize
		if m.bytes+size > m.budget {
			dropped++
			continue
		}
		m.bytes += size
		m.queues[inst].push(queued{Packet: p, inst: inst, arrived: now})
	}
	m.dropped[inst] += uint64(dropped)
	m.mu.Unlock()
	m.signal()
	return dropped
}

// end marks an instance as finished: it will deliver nothing more.
func (m *merger) end(inst int) {
	m.mu.Lock()
	m.ended[inst] = true
	m.mu.Unlock()
	m.signal()
}

func (m *merger) signal() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// pop appends the packets that are safe to write, oldest first, to dst.
// It also says how long until the oldest queued packet's hold expires (0:
// none waiting) and whether every instance has ended and been drained.
func (m *merger) pop(dst []queued) (out []queued, next time.Duration, done bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	for {
		oldest, waiting := -1, true
		for i := range m.queues {
			q := &m.queues[i]
			if q.len() == 0 {
				if !m.ended[i] {
					waiting = false
				}
				continue
			}
			if oldest < 0 || q.peek().Timestamp < m.queues[oldest].peek().Timestamp {
				oldest = i
			}
		}
		if oldest < 0 {
			return dst, 0, m.allEnded()
		}
		head := m.queues[oldest].peek()
		if !waiting {
			// Order comes first: a younger packet whose hold has expired
			// still waits behind this one.
			if wait := head.arrived.Add(m.hold).Sub(now); wait > 0 {
				return dst, wait, false
			}
		}
		q := m.queues[oldest].pop()
		m.bytes -= len(q.Data) + wire.RecordHeaderSize
		dst = append(dst, q)
	}
}

func (m *merger) allEnded() bool {
	for _, e := range m.ended {
		if !e {
			return false
		}
	}
	return true
}

// droppedBy returns the packets dropped for an instance.
func (m *merger) droppedBy(inst int) uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.dropped[inst]
}
