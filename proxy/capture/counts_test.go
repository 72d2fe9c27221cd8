package capture

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/cloudfoundry/pcap-server-release/wire"
)

// An agent that stops answering (frozen, or its cell gone) after a stop
// never sends its final counters: what it counted since its last
// statistics is unknown. The result must say so, count what is known,
// and mark the instance in the closing statistics, instead of presenting
// the last counters as the final ones.
func TestFrozenAgentsCountsAreMarkedUnknown(t *testing.T) {
	// Each agent says when the API has read what it sent before the stop.
	sent := make(chan struct{}, 2)
	frozen := func(t *testing.T, req *wire.CaptureRequest, r *wire.Reader, w *wire.Writer) {
		_ = w.WriteMessage(&wire.Started{LinkType: 1, Snaplen: req.Snaplen})
		_ = packetsFrame(w, 1, 3)
		_ = w.WriteMessage(&wire.Stats{Counters: wire.Counters{Packets: 2, AgentDropped: 7}})
		sent <- struct{}{}
		waitStop(r)
		// Frozen: no End. The read returns once the API closes the stream.
		_, _, _ = r.NextHeader()
	}
	answering := func(t *testing.T, req *wire.CaptureRequest, r *wire.Reader, w *wire.Writer) {
		_ = w.WriteMessage(&wire.Started{LinkType: 1, Snaplen: req.Snaplen})
		_ = packetsFrame(w, 2)
		sent <- struct{}{}
		_ = w.WriteMessage(&wire.End{Reason: waitStop(r), Stats: wire.Stats{Counters: wire.Counters{Packets: 1, KernelDropped: 2}}})
	}
	agents, targets := agentsFor(t, frozen, answering)
	req := request(targets)
	req.Format = FormatPcapng
	// The answering agent must answer within the stop timeout, which a
	// busy machine must not make it miss: the frozen one costs the test
	// the whole timeout.
	sess, _ := Start(context.Background(), agents, req, Options{BufferBytes: 1 << 20, StopTimeout: 2 * time.Second})
	stop := make(chan wire.EndReason, 1)
	var out bytes.Buffer
	done := make(chan Result, 1)
	go func() { done <- sess.Run(context.Background(), &out, func() error { return nil }, stop) }()
	// net.Pipe's writes return once the API has read them.
	<-sent
	<-sent
	stop <- wire.EndRequested
	var res Result
	select {
	case res = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the capture did not end within 10s of a stop with a 2s stop timeout")
	}

	if res.Reason != wire.EndRequested || res.Packets != 3 {
		t.Fatalf("reason %s, %d packets", res.Reason, res.Packets)
	}
	if res.Dropped != (Drops{Kernel: 2, Agent: 7}) {
		t.Fatalf("drops %+v: want the frozen agent's last counters plus the other's final ones", res.Dropped)
	}
	unknown := res.CountsUnknown()
	if len(unknown) != 1 || unknown[0].Instance != "0" || unknown[0].Message != "its agent did not answer the stop within 2s" {
		t.Fatalf("counts unknown: %v", unknown)
	}
	if got := FormatInstanceErrors(unknown); got != "0: its agent did not answer the stop within 2s" {
		t.Fatalf("formatted: %q", got)
	}

	if got := tsharkFrames(t, out.Bytes()); got != "1\n2\n3" {
		t.Fatalf("tshark reads frames %q", got)
	}
	r, _, _ := readPcapng(t, out.Bytes())
	for i, wantComment := range []string{"final counts unknown, drops are at least these: its agent did not answer the stop within 2s", ""} {
		iface, err := r.Interface(i)
		if err != nil {
			t.Fatal(err)
		}
		st := iface.Statistics
		if st.Comment != wantComment {
			t.Errorf("interface %d: last statistics comment %q, want %q", i, st.Comment, wantComment)
		}
		if want := []uint64{7, 2}[i]; st.PacketsDropped != want {
			t.Errorf("interface %d: dropped %d, want %d", i, st.PacketsDropped, want)
		}
	}
}

// Every way of ending without the final counters is named; an End
// brings them.
func TestWhyCountsAreUnknown(t *testing.T) {
	for _, tc := range []struct {
		name   string
		script script
		want   string
	}{
		{"end", func(t *testing.T, req *wire.CaptureRequest, r *wire.Reader, w *wire.Writer) {
			_ = w.WriteMessage(&wire.Started{LinkType: 1, Snaplen: req.Snaplen})
			_ = w.WriteMessage(&wire.End{Reason: wire.EndContainerGone})
		}, ""},
		{"closed", func(t *testing.T, req *wire.CaptureRequest, r *wire.Reader, w *wire.Writer) {
			_ = w.WriteMessage(&wire.Started{LinkType: 1, Snaplen: req.Snaplen})
		}, "its agent closed the stream without sending them"},
		{"malformed", func(t *testing.T, req *wire.CaptureRequest, r *wire.Reader, w *wire.Writer) {
			_ = w.WriteMessage(&wire.Started{LinkType: 1, Snaplen: req.Snaplen})
			_ = w.WriteFrame(wire.TypePackets, []byte{1, 2, 3})
			_, _, _ = r.NextHeader()
		}, "its stream from the agent broke off: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			agents, targets := agentsFor(t, tc.script)
			sess, _ := Start(context.Background(), agents, request(targets), Options{BufferBytes: 1 << 20})
			res := sess.Run(context.Background(), &bytes.Buffer{}, func() error { return nil }, noStop())
			got := res.Instances[0].CountsUnknown
			if (tc.want == "") != (got == "") || !strings.HasPrefix(got, tc.want) {
				t.Fatalf("counts unknown %q, want %q", got, tc.want)
			}
		})
	}
}
