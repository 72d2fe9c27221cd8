package tunnel

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"net"
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

// expectedThrough is what the gate passes of stream, parsed whole: every
// frame as it is, but the data frames of the let-go stream, whose bodies
// are dropped and lengths zeroed; a header cut short at the end never
// passes.
func expectedThrough(stream []byte, letGo uint32) []byte {
	var out []byte
	for len(stream) >= yamuxHeaderSize {
		h := bytes.Clone(stream[:yamuxHeaderSize])
		stream = stream[yamuxHeaderSize:]
		length := binary.BigEndian.Uint32(h[8:])
		if h[1] != yamuxTypeData || length == 0 {
			out = append(out, h...)
			continue
		}
		body := stream[:min(int(length), len(stream))]
		stream = stream[len(body):]
		if binary.BigEndian.Uint32(h[4:]) == letGo {
			binary.BigEndian.PutUint32(h[8:], 0)
			body = nil
		}
		out = append(out, h...)
		out = append(out, body...)
	}
	return out
}

// gateSeeds are yamux streams: data of a limited stream, of the let-go
// stream, of an unlimited one, window updates and pings, a FIN, a frame
// cut short.
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
	}
}

// FuzzFrameGate feeds the gate arbitrary bytes, the agent's: it must pass
// yamux's frames as they are, drop exactly the bodies of the stream let
// go, whatever the sizes of the connection's reads and of yamux's, and
// never panic. data[0] picks the sizes; stream 4 is let go, 2 limited,
// the rest unlimited.
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
		g := newFrameGate(&memConn{r: bytes.NewReader(stream), step: step})
		g.register(^uint32(0)-1, nil) // every id the API could open is registered
		g.register(2, &limitedStream{unread: NewUnread(1<<40, 0)})
		letGo := &limitedStream{unread: NewUnread(1<<40, 0)}
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
		}
		if want := expectedThrough(stream, 4); !bytes.Equal(out, want) {
			at := 0
			for at < min(len(out), len(want)) && out[at] == want[at] {
				at++
			}
			t.Fatalf("passed %d bytes, want %d; they differ from byte %d on: %x, want %x",
				len(out), len(want), at, out[at:min(len(out), at+32)], want[at:min(len(want), at+32)])
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
		g := newFrameGate(&memConn{r: bytes.NewReader(in), step: len(in)})
		g.register(2, nil)

		buf := make([]byte, 1000)
		n, err := g.Read(buf)
		if err != nil || !bytes.Equal(buf[:n], dataFrame(2, []byte("before"))) {
			t.Fatalf("first read %q, %v", buf[:n], err)
		}
		got := make(chan []byte)
		go func() {
			for {
				n, err := g.Read(buf)
				if err != nil {
					close(got)
					return
				}
				got <- bytes.Clone(buf[:n])
			}
		}()
		synctest.Wait()
		select {
		case b := <-got:
			t.Fatalf("stream 4's frame passed before its registration: %q", b)
		default:
		}
		unread := NewUnread(5, 0)
		ls := &limitedStream{unread: unread}
		g.register(4, ls)
		if b := <-got; !bytes.Equal(b, dataFrame(4, []byte("first"))) {
			t.Fatalf("after the registration: %q", b)
		}
		synctest.Wait()
		select {
		case b := <-got:
			t.Fatalf("the second frame passed while the first, 5 bytes of 5 allowed, was unread: %q", b)
		default:
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

// TestGateSeedCorpus keeps testdata/fuzz/FuzzFrameGate in step with
// gateSeeds: run with -update-corpus after changing them.
func TestGateSeedCorpus(t *testing.T) {
	var seeds []any
	for _, s := range gateSeeds() {
		seeds = append(seeds, s)
	}
	fuzzcorpus.Check(t, "FuzzFrameGate", seeds...)
}
