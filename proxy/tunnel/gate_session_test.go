package tunnel

import (
	"bytes"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/cloudfoundry/pcap-server-release/internal/muxconfig"
)

// stallConn passes the first budget bytes read from its connection and
// then nothing until resume closes: an agent whose link stalled in the
// middle of a frame.
type stallConn struct {
	net.Conn
	budget  int
	stalled chan struct{} // closed once the budget is spent and a read waits
	resume  chan struct{}
	once    sync.Once
}

func (c *stallConn) Read(p []byte) (int, error) {
	if c.budget == 0 {
		c.once.Do(func() { close(c.stalled) })
		<-c.resume
		return c.Conn.Read(p)
	}
	n, err := c.Conn.Read(p[:min(len(p), c.budget)])
	c.budget -= n
	return n, err
}

// cellSession is a cell's session as the API sees it, through a frame
// gate, and the agent's end of it.
type cellSession struct {
	gate  *frameGate
	api   *yamux.Session
	agent *yamux.Session
}

func newCellSession(t *testing.T, apiConn, agentConn net.Conn) *cellSession {
	t.Helper()
	c := &cellSession{gate: newFrameGate(apiConn, newPieces())}
	var err error
	if c.api, err = yamux.Server(c.gate, muxconfig.APIConfig(nil)); err != nil {
		t.Fatal(err)
	}
	if c.agent, err = yamux.Client(agentConn, muxconfig.Config(nil)); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *cellSession) close() {
	c.api.Close()
	c.agent.Close()
}

// open opens a capture stream as Agent.open does, counted against unread;
// the agent's end writes body on it.
func (c *cellSession) open(t *testing.T, unread *Unread, body []byte, sent *sync.WaitGroup) *limitedStream {
	t.Helper()
	s, err := c.api.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	ls := newLimitedStream(s, unread)
	c.gate.register(s.StreamID(), ls)
	as, err := c.agent.AcceptStream()
	if err != nil {
		t.Fatal(err)
	}
	sent.Go(func() {
		defer as.Close()
		_, _ = as.Write(body)
	})
	return ls
}

// A cell whose link stalls in the middle of a frame holds its capture's
// allowance only for the bytes that arrived, and those its readers read:
// another cell sending for the same capture goes on, its session answers
// pings and its stream of another capture flows.
func TestAStalledFrameHoldsNoOtherSessionBack(t *testing.T) {
	const limit = 64 << 10
	capA := NewUnread(limit, 0)
	capB := NewUnread(limit, 0)
	bound := int64(limit + maxPiece)

	yAPI, yAgent := net.Pipe()
	stall := &stallConn{Conn: yAPI, budget: 40 << 10, stalled: make(chan struct{}), resume: make(chan struct{})}
	resume := sync.OnceFunc(func() { close(stall.resume) })
	y := newCellSession(t, stall, yAgent)
	xAPI, xAgent := net.Pipe()
	x := newCellSession(t, xAPI, xAgent)
	// The capture's readers read every stream to its end; the agents
	// write theirs.
	var readers, sent sync.WaitGroup
	defer func() {
		resume()
		y.close()
		x.close()
		readers.Wait()
		sent.Wait()
	}()

	type result struct {
		got []byte
		err error
	}
	read := func(s *limitedStream) <-chan result {
		ch := make(chan result, 1)
		readers.Go(func() {
			defer s.Close()
			_ = s.SetReadDeadline(time.Now().Add(30 * time.Second))
			got, err := io.ReadAll(s)
			ch <- result{got, err}
		})
		return ch
	}

	// Y sends capture A a window's frame; its link stalls within it.
	yBody := bytes.Repeat([]byte("y"), muxconfig.APIStreamWindow)
	yA := read(y.open(t, capA, yBody, &sent))
	select {
	case <-stall.stalled:
	case <-time.After(20 * time.Second):
		t.Fatal("Y's link never stalled")
	}
	if h := capA.Held(); h > bound {
		t.Errorf("capture A holds %d bytes with Y stalled, at most %d", h, bound)
	}

	// X sends both captures four windows each.
	xBody := bytes.Repeat([]byte("x"), 4*muxconfig.APIStreamWindow)
	xA := read(x.open(t, capA, xBody, &sent))
	xB := read(x.open(t, capB, xBody, &sent))
	// X's session answers pings all along, and both its streams arrive
	// whole.
	results := map[string]<-chan result{"A": xA, "B": xB}
	deadline := time.After(20 * time.Second)
	for pings := 0; len(results) > 0 || pings < 3; pings++ {
		if _, err := x.api.Ping(); err != nil {
			t.Fatalf("X's ping %d while Y is stalled, capture A holding %d: %v", pings, capA.Held(), err)
		}
		if h := capA.Held(); h > bound {
			t.Errorf("capture A holds %d bytes, at most %d", h, bound)
		}
		for name, ch := range results {
			select {
			case r := <-ch:
				if r.err != nil || !bytes.Equal(r.got, xBody) {
					t.Fatalf("X's stream of capture %s: %d bytes of %d, %v", name, len(r.got), len(xBody), r.err)
				}
				delete(results, name)
			case <-deadline:
				t.Fatalf("X's stream of capture %s stalled with Y's link, capture A holding %d", name, capA.Held())
			default:
			}
		}
	}

	// Y's link comes back: the rest of its frame arrives, intact.
	resume()
	if r := <-yA; r.err != nil || !bytes.Equal(r.got, yBody) {
		t.Fatalf("Y's stream: %d bytes of %d, %v", len(r.got), len(yBody), r.err)
	}
	if capA.Held() != 0 || capB.Held() != 0 {
		t.Fatalf("held after everything was read: A %d, B %d", capA.Held(), capB.Held())
	}
}
