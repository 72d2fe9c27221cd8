package capture

import (
	"testing"
	"time"

	"github.com/cloudfoundry/pcap-server-release/wire"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func pkts(ts ...int64) []wire.Packet {
	var out []wire.Packet
	for _, t := range ts {
		out = append(out, wire.Packet{Timestamp: t, Length: 1, Data: []byte{byte(t)}})
	}
	return out
}

func timestamps(q []queued) []int64 {
	var out []int64
	for _, p := range q {
		out = append(out, p.Timestamp)
	}
	return out
}

func equal(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func newTestMerger(n int) (*merger, *fakeClock) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	m := newMerger(n, 250*time.Millisecond, 1<<20)
	m.now = clk.now
	return m, clk
}

func TestMergeSingleInstancePassesThrough(t *testing.T) {
	m, _ := newTestMerger(1)
	m.push(0, pkts(1, 2, 3))
	out, next, done := m.pop(nil)
	if !equal(timestamps(out), []int64{1, 2, 3}) || next != 0 || done {
		t.Fatalf("%v %v %v", timestamps(out), next, done)
	}
}

func TestMergeInterleavesByTimestamp(t *testing.T) {
	m, _ := newTestMerger(2)
	m.push(0, pkts(1, 4, 6))
	m.push(1, pkts(2, 3, 7))
	// 6 is safe while instance 1 has 7 queued; then 7 must wait, for
	// instance 0 may still send something older.
	out, _, _ := m.pop(nil)
	if got := timestamps(out); !equal(got, []int64{1, 2, 3, 4, 6}) {
		t.Fatalf("got %v", got)
	}
	out, next, _ := m.pop(nil)
	if len(out) != 0 || next != 250*time.Millisecond {
		t.Fatalf("7 should wait for instance 0 or its hold: %v, next %v", timestamps(out), next)
	}
}

func TestMergeHoldBoundsTheWaitForAnIdleInstance(t *testing.T) {
	m, clk := newTestMerger(2)
	m.push(0, pkts(10, 11))
	out, next, _ := m.pop(nil)
	if len(out) != 0 || next != 250*time.Millisecond {
		t.Fatalf("released before hold: %v, next %v", timestamps(out), next)
	}
	clk.advance(100 * time.Millisecond)
	m.push(0, pkts(12))
	clk.advance(150 * time.Millisecond)
	out, next, _ = m.pop(nil)
	if !equal(timestamps(out), []int64{10, 11}) || next != 100*time.Millisecond {
		t.Fatalf("after hold: %v, next %v", timestamps(out), next)
	}
}

func TestMergeEndedInstanceDoesNotHoldOthers(t *testing.T) {
	m, _ := newTestMerger(2)
	m.push(0, pkts(5, 6))
	m.end(1)
	out, _, done := m.pop(nil)
	if !equal(timestamps(out), []int64{5, 6}) || done {
		t.Fatalf("%v %v", timestamps(out), done)
	}
	m.end(0)
	if _, _, done := m.pop(nil); !done {
		t.Fatal("not done after both ended and drained")
	}
}

func TestMergeBudgetDropsAndCounts(t *testing.T) {
	m, _ := newTestMerger(1)
	m.budget = 3 * (wire.RecordHeaderSize + 1)
	if d := m.push(0, pkts(1, 2, 3, 4, 5)); d != 2 {
		t.Fatalf("dropped %d", d)
	}
	out, _, _ := m.pop(nil)
	if !equal(timestamps(out), []int64{1, 2, 3}) || m.droppedBy(0) != 2 {
		t.Fatalf("%v dropped %d", timestamps(out), m.droppedBy(0))
	}
	// Room again once written.
	if d := m.push(0, pkts(6)); d != 0 {
		t.Fatalf("budget not returned: dropped %d", d)
	}
}

// A queue that never empties keeps memory proportional to what it holds,
// not to what it ever held.
func TestMergeQueueDoesNotGrowWhileNeverEmpty(t *testing.T) {
	m, clk := newTestMerger(2)
	ts := int64(0)
	for range 2000 {
		for range 50 {
			ts++
			m.push(0, pkts(ts))
		}
		clk.advance(300 * time.Millisecond) // past the hold: all but the newest go
		m.push(0, pkts(ts+1))
		ts++
		m.pop(nil)
	}
	if q := &m.queues[0]; q.len() > 2 || cap(q.items) > 4096 {
		t.Fatalf("queue holds %d packets in %d slots", q.len(), cap(q.items))
	}
}
