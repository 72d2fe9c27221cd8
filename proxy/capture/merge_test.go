package capture

import (
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/cloudfoundry/pcap-server-release/wire"
)

var epoch = time.Unix(1000, 0)

// frameOf builds a frame of one-byte packets with these timestamps,
// arrived at at.
func frameOf(at time.Time, ts ...int64) *frame {
	var b wire.Batch
	for _, t := range ts {
		b.Append(t, 1, []byte{byte(t)})
	}
	return &frame{buf: b.Frame()[wire.HeaderSize:], left: len(ts), arrived: at}
}

// drain writes what the merger lets through at now, as the run loop
// does, and returns the timestamps in order and the wait it reports.
func drain(m *merger, now time.Time) ([]int64, time.Duration) {
	var out []int64
	for {
		run, wait, ok := m.next(now)
		if !ok {
			return out, wait
		}
		f := run.f
		for f.left > 0 {
			rec := f.head()
			if rec.Timestamp > run.until {
				break
			}
			out = append(out, rec.Timestamp)
			f.off += rec.Size()
			f.left--
		}
		m.written(run.src, func(*frame) {})
	}
}

const hold = 250 * time.Millisecond

func TestMergeSingleInstancePassesThrough(t *testing.T) {
	m := newMerger(1, hold)
	m.add(0, frameOf(epoch, 1, 2, 3))
	out, wait := drain(m, epoch)
	if !slices.Equal(out, []int64{1, 2, 3}) || wait != 0 || m.done() {
		t.Fatalf("%v %v %v", out, wait, m.done())
	}
}

func TestMergeInterleavesByTimestamp(t *testing.T) {
	m := newMerger(2, hold)
	m.add(0, frameOf(epoch, 1, 4, 6))
	m.add(1, frameOf(epoch, 2, 3, 7))
	// 6 is safe while instance 1 has 7 queued; then 7 must wait, for
	// instance 0 may still send something older.
	out, wait := drain(m, epoch)
	if !slices.Equal(out, []int64{1, 2, 3, 4, 6}) || wait != hold {
		t.Fatalf("got %v, wait %v", out, wait)
	}
}

func TestMergeHoldBoundsTheWaitForAnIdleInstance(t *testing.T) {
	m := newMerger(2, hold)
	m.add(0, frameOf(epoch, 10, 11))
	if out, wait := drain(m, epoch); len(out) != 0 || wait != hold {
		t.Fatalf("released before hold: %v, wait %v", out, wait)
	}
	m.add(0, frameOf(epoch.Add(100*time.Millisecond), 12))
	out, wait := drain(m, epoch.Add(hold))
	if !slices.Equal(out, []int64{10, 11}) || wait != 100*time.Millisecond {
		t.Fatalf("after hold: %v, wait %v", out, wait)
	}
}

func TestMergeEndedInstanceDoesNotHoldOthers(t *testing.T) {
	m := newMerger(2, hold)
	m.add(0, frameOf(epoch, 5, 6))
	m.end(1)
	if out, _ := drain(m, epoch); !slices.Equal(out, []int64{5, 6}) || m.done() {
		t.Fatalf("%v done %v", out, m.done())
	}
	m.end(0)
	if !m.done() {
		t.Fatal("not done after both ended and drained")
	}
}

// However the instances' packets interleave and arrive, with every
// instance busy they come out in timestamp order.
func TestMergeOrdersManyInstances(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const instances, perInstance = 17, 300
	m := newMerger(instances, hold)
	var all []int64
	next := make([]int64, instances)
	pending := make([][]int64, instances)
	for i := range instances {
		ts := int64(0)
		for range perInstance {
			ts += 1 + rng.Int64N(20)
			pending[i] = append(pending[i], ts*instances+int64(i)) // distinct
		}
		all = append(all, pending[i]...)
	}
	var out []int64
	for len(out) < len(all) {
		// Each instance delivers its next few packets, in order.
		for i := range instances {
			k := min(len(pending[i])-int(next[i]), 1+rng.IntN(8))
			if k > 0 {
				m.add(i, frameOf(epoch, pending[i][next[i]:next[i]+int64(k)]...))
				next[i] += int64(k)
			}
			if int(next[i]) == len(pending[i]) {
				m.end(i)
			}
		}
		got, _ := drain(m, epoch)
		out = append(out, got...)
		if len(got) == 0 && !m.done() {
			// Only waits on held packets remain: let the hold expire.
			got, _ = drain(m, epoch.Add(hold))
			out = append(out, got...)
		}
	}
	slices.Sort(all)
	if !slices.Equal(out, all) {
		t.Fatal("packets out of timestamp order or lost")
	}
	if !m.done() {
		t.Fatal("not done")
	}
}

// The budget counts each frame's whole buffer and its bookkeeping, from
// the moment it is read until its last record is written.
func TestFramePoolBudget(t *testing.T) {
	smallest := classSize(0)
	perFrame := smallest + frameOverhead
	p := newFramePool(2 * perFrame)
	a, b := p.get(10), p.get(smallest)
	if a == nil || b == nil || len(a.buf) != 10 || cap(a.buf) != smallest {
		t.Fatalf("frames %v %v", a, b)
	}
	// Ten bytes cost a whole buffer: the third frame does not fit.
	if p.get(1) != nil {
		t.Fatal("a third frame fit in a budget of two")
	}
	p.put(a)
	if c := p.get(1); c == nil {
		t.Fatal("the budget was not returned")
	}
	if big := newFramePool(1 << 30).get(wire.MaxPayload); big == nil || cap(big.buf) != wire.MaxPayload {
		t.Fatal("the largest frame has no buffer class")
	}
}

// A frame's buffer is at most a quarter larger than the frame (from the
// smallest class up), so the budget holds about what it says.
func TestFrameClassesFitClosely(t *testing.T) {
	last := -1
	for n := 1; n <= wire.MaxPayload; n += 1 + n/997 {
		c := classOf(n)
		size := classSize(c)
		if size < n || (n > classSize(0) && size > n+n/4) || c < last || c >= numClasses {
			t.Fatalf("%d bytes: class %d of %d bytes", n, c, size)
		}
		last = c
	}
	if got := classSize(classOf(128<<10 + wire.RecordHeaderSize + 60)); got != 160<<10 {
		t.Fatalf("an agent's full batch takes a buffer of %d bytes", got)
	}
}

// A queue that never empties keeps memory proportional to what it holds,
// not to what it ever held.
func TestMergeQueueDoesNotGrowWhileNeverEmpty(t *testing.T) {
	m := newMerger(2, hold)
	ts := int64(0)
	now := epoch
	for range 2000 {
		for range 50 {
			ts++
			m.add(0, frameOf(now, ts))
		}
		now = now.Add(hold + time.Millisecond) // past the hold: all but the newest go
		ts++
		m.add(0, frameOf(now, ts))
		drain(m, now)
	}
	if q := &m.queues[0]; q.len() > 2 || cap(q.items) > 4096 {
		t.Fatalf("queue holds %d frames in %d slots", q.len(), cap(q.items))
	}
}

// Written frames wait to be used again within the budget: an agent that
// changes its frames' sizes does not leave several budgets' worth of
// buffers alive.
func TestFramePoolKeepsItsFreeFramesWithinTheBudget(t *testing.T) {
	const budget = 8 << 20
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	p := newFramePool(budget)
	for _, size := range []int{128 << 10, 160 << 10, 192 << 10, 224 << 10} {
		var got []*frame
		for f := p.get(size); f != nil; f = p.get(size) {
			got = append(got, f)
		}
		if len(got) < budget/(size+size/4+frameOverhead) {
			t.Fatalf("%d frames of %d bytes in a budget of %d", len(got), size, budget)
		}
		for _, f := range got {
			p.put(f)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if live := int64(after.HeapAlloc) - int64(before.HeapAlloc); live > budget+1<<20 {
		t.Fatalf("%d bytes live after a collection, for a budget of %d", live, budget)
	}
	runtime.KeepAlive(p)
}
