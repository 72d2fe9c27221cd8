package tunnel_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/cloudfoundry/pcap-server-release/internal/muxconfig"
	"github.com/cloudfoundry/pcap-server-release/proxy/tunnel"
)

// pattern is what the agent sends on stream i: n bytes that say which
// stream and which offset they are.
func pattern(i, n int) []byte {
	b := make([]byte, n)
	for k := range b {
		b[k] = byte(i*7 + k/1000)
	}
	return b
}

// The streams of one capture hold at most their Unread's limit (or one
// frame) in yamux while nobody reads them, however many there are and
// however fast the agent sends; everything arrives intact once read, and
// a stream let go drops what comes after without holding the others up.
func TestUnreadBoundsWhatACapturesStreamsHold(t *testing.T) {
	const streams = 16
	const perStream = 1 << 20 // four windows each: yamux alone would hold 4 MiB
	const limit = 64 << 10
	p := newPKI(t)
	a := startAPI(t, p, "api/0", "127.0.0.1:0")
	agent, _ := dialByHand(t, tlsDial(t, p, a.addr, ""), hello("cell", "run-1", "127.0.0.1"))
	ag := waitAgent(t, a, "127.0.0.1")

	// The agent sends each stream its pattern as fast as it may, in
	// writes as large as a window.
	var sent sync.WaitGroup
	sent.Go(func() {
		for i := range streams + 1 {
			st, err := agent.sess.AcceptStream()
			if err != nil {
				return
			}
			sent.Go(func() {
				defer st.Close()
				_, _ = st.Write(pattern(i, perStream))
			})
		}
	})
	defer sent.Wait()
	defer agent.sess.Close()

	unread := tunnel.NewUnread(limit, 0)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	var conns []net.Conn
	for range streams {
		s, err := ag.OpenLimited(ctx, unread)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		conns = append(conns, s)
	}
	// One more, let go at once: what its agent sends is dropped.
	gone, err := ag.OpenLimited(ctx, unread)
	if err != nil {
		t.Fatal(err)
	}
	gone.Close()

	// Nothing reads: the allowance fills, and stays as full as it may.
	// Sampled while the agent pushes, up to 100 samples once full.
	bound := max(int64(limit), muxconfig.APIStreamWindow)
	var most int64
	for full := 0; full < 100 && ctx.Err() == nil; {
		h := unread.Held()
		if h > bound {
			t.Fatalf("%d bytes unread, at most %d", h, bound)
		}
		if most = max(most, h); most >= limit {
			full++
		}
		time.Sleep(2 * time.Millisecond) // sampling, not waiting for an event
	}
	if most < limit {
		t.Fatalf("at most %d bytes were unread: the agent never filled the %d allowed", most, limit)
	}

	// Read every stream to its end: all of it, intact.
	var read sync.WaitGroup
	for i, s := range conns {
		read.Go(func() {
			_ = s.SetReadDeadline(time.Now().Add(20 * time.Second))
			got, err := io.ReadAll(s)
			if err != nil || !bytes.Equal(got, pattern(i, perStream)) {
				t.Errorf("stream %d: %d bytes, %v", i, len(got), err)
			}
		})
	}
	read.Wait()
	if h := unread.Held(); h != 0 {
		t.Fatalf("%d bytes still counted as unread", h)
	}
}
