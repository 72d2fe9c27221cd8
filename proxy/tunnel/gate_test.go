package tunnel

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"testing/synctest"

	"github.com/cloudfoundry/pcap-server-release/test/fuzzcorpus"
)

// memConn is a connection that reads from memory, step bytes at a time.
type memConn struct {
	net.Conn // nil: Read and Close only
	r        io.Reader
	step     int
}

func (c *memConn) Read(p []byte) (int, error) { return c.r.Read(p[:min(len(p), c.step)]) }
func (c *memConn) Close() error               { return nil }

// yamuxFrame is a yamux frame: header and body.
func yamuxFrame(typ byte, flags uint16, id uint32, body []byte, length uint32) []byte {
	h := make([]byte, yamuxHeaderSize, yamuxHeaderSize+len(body))
	h[0], h[1] = 0, typ
	binary.BigEndian.PutUint16(h[2:], flags)
	binary.BigEndian.PutUint32(h[4:], id)
	binary.BigEndian.PutUint32(h[8:], length)
	return append(h, body...)
}

func dataFrame(id uint32, body []byte) []byte {
	return yamuxFrame(yamuxTypeData, 0, id, body, uint32(len(body)))
}

// gateEvents is what a stream of yamux frames tells yamux, in order:
// every frame as it is, but the data frames of the limited streams
// (limited, letGo), which may come in pieces: for them, their opening
// flags once some of the body came, their body's bytes (none of
// letGo's), and their closing flags once the body is whole (letGo's at
// once: its body is not waited for).
// The bytes of consecutive frames of a stream are one event. A header
// cut short at the end tells nothing.
func gateEvents(stream []byte, limited, letGo uint32) []string {
	var ev []string
	var data []byte // the bytes of the last event, if they are data
	var dataID uint32
	for len(stream) >= yamuxHeaderSize {
		h := stream[:yamuxHeaderSize]
		stream = stream[yamuxHeaderSize:]
		id := binary.BigEndian.Uint32(h[4:])
		length := binary.BigEndian.Uint32(h[8:])
		var body []byte
		if h[1] == yamuxTypeData {
			body = stream[:min(int(length), len(stream))]
			stream = stream[len(body):]
		}
		if h[1] != yamuxTypeData || (id != limited && id != letGo) {
			ev = append(ev, fmt.Sprintf("frame %x %x", h, body))
			data = nil
			continue
		}
		flags := binary.BigEndian.Uint16(h[2:])
		// A limited frame's first piece, with its opening flags, passes
		// once some of its body came.
		if open := flags &^ yamuxCloseFlags; open != 0 && (id != limited || length == 0 || len(body) > 0) {
			ev = append(ev, fmt.Sprintf("stream %d flags %#x", id, open))
			data = nil
		}
		if id == letGo {
			body = nil
		}
		if len(body) > 0 {
			if data == nil || dataID != id {
				ev = append(ev, "")
				data, dataID = nil, id
			}
			data = append(data, body...)
			ev[len(ev)-1] = fmt.Sprintf("stream %d data %x", id, data)
		}
		if cl := flags & yamuxCloseFlags; cl != 0 && (id == letGo || len(body) == int(length)) {
			ev = append(ev, fmt.Sprintf("stream %d flags %#x", id, cl))
			data = nil
		}
	}
	return ev
}

// gateSeeds are yamux streams: data of a limited stream, of the let-go
// stream, of an unlimited one, window updates and pings, a FIN, a frame
// cut short, a limited frame passed in pieces.
func gateSeeds() [][]byte {
	var s []byte
	s = append(s, yamuxFrame(1, 0x1, 2, nil, 0)...) // window update, SYN
	s = append(s, dataFrame(2, bytes.Repeat([]byte{2}, 5000))...)
	s = append(s, dataFrame(4, bytes.Repeat([]byte{4}, 300))...)
	s = append(s, yamuxFrame(2, 0x1, 0, nil, 7)...) // ping
	s = append(s, dataFrame(1, []byte("control"))...)
	s = append(s, dataFrame(6, bytes.Repeat([]byte{6}, 70))...)
	s = append(s, yamuxFrame(yamuxTypeData, 0x4, 4, []byte{9, 9}, 2)...) // FIN
	return [][]byte{
		append([]byte{3}, s...),
		append([]byte{0}, s...),
		append([]byte{17}, append(bytes.Clone(s), dataFrame(2, make([]byte, 100))[:40]...)...),
		{1, 0, 0, 0, 0, 0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff},
		// A limited frame with every flag, in pieces of 14 bytes at most.
		append([]byte{1}, yamuxFrame(yamuxTypeData, 0x1|0x2|0x4|0x8, 2, bytes.Repeat([]byte{2}, 3000), 3000)...),
	}
}

// FuzzFrameGate feeds the gate arbitrary bytes, the agent's: it must tell
// yamux what the frames tell, a limited stream's frames perhaps in
// pieces, drop exactly the bodies of the stream let go, whatever the
// sizes of the connection's reads and of yamux's and the room the
// capture has, and never panic. data[0] picks the sizes; stream 4 is let
// go, 2 limited, the rest unlimited. The capture reads everything
// admitted after every read of yamux's.
func FuzzFrameGate(f *testing.F) {
	for _, s := range gateSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		step := int(data[0]) + 1
		stream := data[1:]
		g := newFrameGate(&memConn{r: bytes.NewReader(stream), step: step}, newPieces())
		g.register(^uint32(0)-1, nil) // every id the API could open is registered
		unread := NewUnread(step*13%3000+1, 0)
		g.register(2, newLimitedStream(nil, unread))
		letGo := newLimitedStream(nil, NewUnread(1<<40, 0))
		g.register(4, letGo)
		letGo.closed = letGo.closed.Add(1)
		// yamux reads through a bufio.Reader, in pieces of any size.
		r := bufio.NewReader(g)
		var out []byte
		buf := make([]byte, step*37%5000+1)
		for range 4 * len(data) {
			n, err := r.Read(buf)
			out = append(out, buf[:n]...)
			if err != nil {
				break
			}
			if h := unread.Held(); h > max(int64(unread.limit), maxPiece) {
				t.Fatalf("%d bytes admitted at once, limit %d", h, unread.limit)
			}
			unread.release(unread.Held())
		}
		got, want := gateEvents(out, 2, 4), gateEvents(stream, 2, 4)
		if !slices.Equal(got, want) {
			at := 0
			for at < min(len(got), len(want)) && got[at] == want[at] {
				at++
			}
			t.Fatalf("yamux was told %d events, want %d; from event %d on: %.200q, want %.200q",
				len(got), len(want), at, got[at:], want[at:])
		}
	})
}

// A data frame of a stream the API is opening waits for the stream's
// registration, and then for room in its capture's Unread; what came
// before it passes first.
func TestFrameGateWaitsForRegistrationThenRoom(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var in []byte
		in = append(in, dataFrame(2, []byte("before"))...)
		in = append(in, dataFrame(4, []byte("first"))...)
		in = append(in, dataFrame(4, []byte("second"))...)
		g := newFrameGate(&memConn{r: bytes.NewReader(in), step: len(in)}, newPieces())
		g.register(2, nil)

		buf := make([]byte, 1000)
		n, err := g.Read(buf)
		if err != nil || !bytes.Equal(buf[:n], dataFrame(2, []byte("before"))) {
			t.Fatalf("first read %q, %v", buf[:n], err)
		}
		got := gateReads(g)
		if b, ok := passedAlready(got); ok {
			t.Fatalf("stream 4's frame passed before its registration: %q", b)
		}
		unread := NewUnread(5, 0)
		ls := newLimitedStream(nil, unread)
		g.register(4, ls)
		if b := <-got; !bytes.Equal(b, dataFrame(4, []byte("first"))) {
			t.Fatalf("after the registration: %q", b)
		}
		if b, ok := passedAlready(got); ok {
			t.Fatalf("the second frame passed while the first, 5 bytes of 5 allowed, was unread: %q", b)
		}
		ls.mu.Lock()
		owed := ls.owed
		ls.mu.Unlock()
		if owed != 5 || unread.Held() != 5 {
			t.Fatalf("owed %d, held %d", owed, unread.Held())
		}
		// The capture reads the first frame's body: room again.
		ls.mu.Lock()
		ls.owed = 0
		ls.mu.Unlock()
		unread.release(5)
		if b := <-got; !bytes.Equal(b, dataFrame(4, []byte("second"))) {
			t.Fatalf("after room: %q", b)
		}
		if _, ok := <-got; ok {
			t.Fatal("more passed than there was")
		}
		if unread.Held() != 6 {
			t.Fatalf("held %d, want the second frame's 6", unread.Held())
		}
		g.Close()
	})
}

// gateReads reads g as yamux does, each read's bytes to the channel,
// closed at g's first error.
func gateReads(g *frameGate) <-chan []byte {
	got := make(chan []byte)
	go func() {
		defer close(got)
		buf := make([]byte, 1000)
		for {
			n, err := g.Read(buf)
			if err != nil {
				return
			}
			got <- bytes.Clone(buf[:n])
		}
	}()
	return got
}

// passedAlready returns what the gate passed once every goroutine of the
// bubble waits, if anything.
func passedAlready(got <-chan []byte) ([]byte, bool) {
	synctest.Wait()
	select {
	case b := <-got:
		return b, true
	default:
		return nil, false
	}
}

// TestGateSeedCorpus keeps testdata/fuzz/FuzzFrameGate in step with
// gateSeeds: run with -update-corpus after changing them.
func TestGateSeedCorpus(t *testing.T) {
	var seeds []any
	for _, s := range gateSeeds() {
		seeds = append(seeds, s)
	}
	fuzzcorpus.Check(t, "FuzzFrameGate", seeds...)
}

// Pieces wait their turn: a large one that came first is not passed over
// for smaller ones that fit sooner.
func TestUnreadAdmitsFirstComeFirstServed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		u := NewUnread(100, 0)
		if !u.tryAdmit(100) {
			t.Fatal("an empty Unread refused its limit")
		}
		never := make(chan struct{})
		var order []int64
		var mu sync.Mutex
		for _, n := range []int64{100, 10} {
			go func() {
				if u.admit(n, never, never) {
					mu.Lock()
					order = append(order, n)
					mu.Unlock()
				}
			}()
			synctest.Wait() // queued in this order
		}
		u.release(50)
		synctest.Wait()
		if len(order) != 0 || u.tryAdmit(10) {
			t.Fatalf("with 50 of 100 held, admitted %v before the 100 that waited first", order)
		}
		u.release(50)
		synctest.Wait()
		if !slices.Equal(order, []int64{100}) {
			t.Fatalf("admitted %v once empty, want the 100 that came first", order)
		}
		u.release(100)
		synctest.Wait()
		if !slices.Equal(order, []int64{100, 10}) || u.Held() != 10 {
			t.Fatalf("admitted %v, held %d", order, u.Held())
		}
	})
}

// A piece waiting for room for a stream the capture lets go is dropped at
// once, its flags still passed, and what comes after it passes.
func TestAWaitingPieceOfAStreamLetGoIsDropped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var in []byte
		in = append(in, yamuxFrame(yamuxTypeData, 0x4, 4, []byte("waits"), 5)...) // FIN
		in = append(in, dataFrame(2, []byte("after"))...)
		g := newFrameGate(&memConn{r: bytes.NewReader(in), step: len(in)}, newPieces())
		g.register(2, nil)
		unread := NewUnread(5, 0)
		unread.tryAdmit(5) // another stream's, unread
		ls := newLimitedStream(nil, unread)
		g.register(4, ls)

		got := gateReads(g)
		if b, ok := passedAlready(got); ok {
			t.Fatalf("passed with no room: %x", b)
		}
		ls.letGo()
		if b := <-got; !bytes.Equal(b, yamuxFrame(yamuxTypeData, 0x4, 4, nil, 0)) {
			t.Fatalf("once let go: %x, want its header, empty, with its FIN", b)
		}
		if b := <-got; !bytes.Equal(b, dataFrame(2, []byte("after"))) {
			t.Fatalf("after it: %x", b)
		}
		if _, ok := <-got; ok {
			t.Fatal("more passed than there was")
		}
		if unread.Held() != 5 {
			t.Fatalf("held %d, want the other stream's 5", unread.Held())
		}
		g.Close()
	})
}
