package capture

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cloudfoundry/pcap-server-release/wire"
)

// bigBatch is a Packets batch of wire.MaxPayload: packets of the largest
// snaplen and one to fill it, each with timestamp ts.
func bigBatch(ts int64) *wire.Batch {
	b := wire.NewBatch(wire.MaxPayload)
	data := make([]byte, wire.MaxSnaplen)
	for b.Fits(len(data)) {
		b.Append(ts, len(data), data)
	}
	rest := wire.MaxPayload - b.Size() - wire.RecordHeaderSize
	b.Append(ts, rest, data[:rest])
	return b
}

// Frames the budget has no room for are read through each instance's
// small buffer, not into memory of their own: with many instances, what
// the API holds stays near the budget. (Before, each instance kept a
// scratch frame as large as the largest it had dropped: 64 MiB here.)
func TestManyInstancesDropWithoutHoldingTheirFrames(t *testing.T) {
	const instances = 64
	const budget = 1 << 20 // a frame of wire.MaxPayload never fits
	sent := make(chan struct{}, instances)
	measured := make(chan struct{})
	scripts := make([]script, instances)
	for i := range scripts {
		scripts[i] = func(t *testing.T, req *wire.CaptureRequest, r *wire.Reader, w *wire.Writer) {
			_ = w.WriteMessage(&wire.Started{LinkType: 1, Snaplen: wire.MaxSnaplen})
			// net.Pipe: once the write returns, the API has read it all.
			_ = w.WriteBatch(bigBatch(int64(i + 1)))
			// A control frame near its limit, padded with a field the
			// API ignores.
			pad := strings.Repeat("x", wire.MaxControlPayload-200)
			_ = w.WriteFrame(wire.TypeStats, fmt.Appendf(nil, `{"packets":%d,"pad":%q}`, bigBatch(0).Count(), pad))
			sent <- struct{}{}
			<-measured
			_ = w.WriteMessage(&wire.End{Reason: wire.EndDuration, Stats: wire.Stats{Counters: wire.Counters{Packets: uint64(bigBatch(0).Count())}}})
		}
	}
	agents, targets := agentsFor(t, scripts...)
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	sess, failed := Start(context.Background(), agents, request(targets), Options{BufferBytes: budget})
	if len(failed) > 0 {
		t.Fatal(failed[0])
	}
	held := make(chan int64, 1)
	go func() {
		defer close(measured)
		for range instances {
			<-sent
		}
		runtime.GC()
		var during runtime.MemStats
		runtime.ReadMemStats(&during)
		held <- int64(during.HeapAlloc) - int64(before.HeapAlloc)
	}()
	res := sess.Run(context.Background(), io.Discard, func() error { return nil }, noStop())
	// The budget, each instance's buffer and bookkeeping (its goroutines
	// and the fake agents' are on stacks, not in the heap), the output.
	limit := int64(budget + instances*(readBuffer+8<<10) + 2<<20)
	if got := <-held; got > limit {
		t.Fatalf("the API held %.1f MiB for %d instances, budget %d MiB, limit %.1f MiB", float64(got)/(1<<20), instances, budget>>20, float64(limit)/(1<<20))
	}
	perFrame := uint64(bigBatch(0).Count())
	if res.Packets != 0 || res.Dropped.API != instances*perFrame {
		t.Fatalf("written %d, dropped by the API %d; want 0 and %d", res.Packets, res.Dropped.API, instances*perFrame)
	}
}

// An instance's packets count against the budget from its Started on,
// while the API still waits for the others: they are read at once (the
// agent is not left to fill its window), kept within the budget, and
// what does not fit is dropped and counted.
func TestPacketsBeforeEveryInstanceAnsweredCountAgainstTheBudget(t *testing.T) {
	early := make(chan struct{})
	var frames [][]int64
	for f := range 3 {
		frames = append(frames, []int64{int64(3*f + 1), int64(3*f + 2), int64(3*f + 3)})
	}
	agents, targets := agentsFor(t,
		func(t *testing.T, req *wire.CaptureRequest, r *wire.Reader, w *wire.Writer) {
			_ = w.WriteMessage(&wire.Started{LinkType: 1, Snaplen: req.Snaplen})
			for _, ts := range frames {
				// net.Pipe: returns once the API has read the frame.
				if err := packetsFrame(w, ts...); err != nil {
					t.Errorf("the API did not read instance 0's packets: %v", err)
				}
			}
			close(early)
			_ = w.WriteMessage(&wire.End{Reason: waitStop(r)})
		},
		func(t *testing.T, req *wire.CaptureRequest, r *wire.Reader, w *wire.Writer) {
			select {
			case <-early:
			case <-time.After(10 * time.Second):
				t.Error("instance 0's packets were not read before instance 1 answered")
			}
			_ = w.WriteMessage(&wire.Started{LinkType: 1, Snaplen: req.Snaplen})
			_ = w.WriteMessage(&wire.End{Reason: wire.EndDuration})
		})
	req := request(targets)
	req.MaxPackets = 6
	// Room for two frames' buffers.
	sess, failed := Start(context.Background(), agents, req, Options{BufferBytes: 2 * (classSize(0) + frameOverhead)})
	if len(failed) > 0 {
		t.Fatal(failed[0])
	}
	var out bytes.Buffer
	res := sess.Run(context.Background(), &out, func() error { return nil }, noStop())
	got := readPcap(t, out.Bytes())
	if want := []int64{1, 2, 3, 4, 5, 6}; !slices.Equal(got, want) {
		t.Fatalf("file holds %v, want %v", got, want)
	}
	if res.Dropped.API != 3 || res.Reason != wire.EndPackets {
		t.Fatalf("result %+v", res)
	}
}

// A control frame above wire.MaxControlPayload ends its instance with an
// error that says so, without being read; frames of unknown types are
// skipped whatever their size, and the stream goes on.
func TestControlFramesAreCappedAndUnknownFramesSkipped(t *testing.T) {
	agents, targets := agentsFor(t,
		func(t *testing.T, req *wire.CaptureRequest, r *wire.Reader, w *wire.Writer) {
			_ = w.WriteMessage(&wire.Started{LinkType: 1, Snaplen: req.Snaplen})
			_ = packetsFrame(w, 1)
			_ = w.WriteFrame(wire.TypeStats, make([]byte, wire.MaxControlPayload+1))
		},
		func(t *testing.T, req *wire.CaptureRequest, r *wire.Reader, w *wire.Writer) {
			_ = w.WriteFrame(wire.Type(99), make([]byte, wire.MaxPayload))
			_ = w.WriteMessage(&wire.Started{LinkType: 1, Snaplen: req.Snaplen})
			_ = w.WriteFrame(wire.Type(98), make([]byte, wire.MaxPayload))
			_ = packetsFrame(w, 2)
			_ = w.WriteMessage(&wire.End{Reason: wire.EndDuration, Stats: wire.Stats{Counters: wire.Counters{Packets: 1}}})
		})
	sess, failed := Start(context.Background(), agents, request(targets), Options{BufferBytes: 1 << 20})
	if len(failed) > 0 {
		t.Fatal(failed[0])
	}
	var out bytes.Buffer
	res := sess.Run(context.Background(), &out, func() error { return nil }, noStop())
	if got := readPcap(t, out.Bytes()); !slices.Equal(got, []int64{1, 2}) {
		t.Fatalf("file holds %v", got)
	}
	want := fmt.Sprintf("stats frame of %d bytes, more than the %d a control frame may have", wire.MaxControlPayload+1, wire.MaxControlPayload)
	if i := res.Instances[0]; i.Reason != wire.EndError || i.Message != want {
		t.Fatalf("instance 0 ended %s: %q", i.Reason, i.Message)
	}
	if i := res.Instances[1]; i.Reason != wire.EndDuration {
		t.Fatalf("instance 1 ended %s: %q", i.Reason, i.Message)
	}
}

// A frame the budget has no room for is checked all the same: a
// malformed one breaks the stream, as a kept one does.
func TestDroppedFramesAreCheckedToo(t *testing.T) {
	client := &stallingWriter{stalled: make(chan struct{}), release: make(chan struct{})}
	agents, targets := agentsFor(t, func(t *testing.T, req *wire.CaptureRequest, r *wire.Reader, w *wire.Writer) {
		defer close(client.release)
		_ = w.WriteMessage(&wire.Started{LinkType: 1, Snaplen: req.Snaplen})
		_ = packetsFrame(w, 1)
		<-client.stalled // the API is stuck writing the first frame
		_ = packetsFrame(w, 2)
		// Beyond the budget, and a record followed by three stray bytes.
		var b wire.Batch
		b.Append(3, 100, make([]byte, 60))
		_ = w.WriteFrame(wire.TypePackets, append(bytes.Clone(b.Frame()[wire.HeaderSize:]), 1, 2, 3))
	})
	sess, _ := Start(context.Background(), agents, request(targets), Options{BufferBytes: classSize(0) + frameOverhead})
	res := sess.Run(context.Background(), client, func() error { return nil }, noStop())
	if got := readPcap(t, client.Bytes()); !slices.Equal(got, []int64{1, 2}) {
		t.Fatalf("file holds %v", got)
	}
	if i := res.Instances[0]; i.Reason != wire.EndError || !strings.Contains(i.Message, "3 stray bytes at offset 76") {
		t.Fatalf("instance ended %s: %q", i.Reason, i.Message)
	}
}
