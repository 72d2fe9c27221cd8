package tunnel

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/cloudfoundry/pcap-server-release/internal/muxconfig"
)

// Unread bounds what the streams of one capture hold in yamux's receive
// buffers: what the session took from the connection and the capture's
// readers have not read yet. yamux lets every stream hold its window,
// 256 KiB at the least, whatever its reader does; a capture of hundreds
// of instances would hold hundreds of windows, more than its budget.
// Through an Unread, a session passes yamux the body of a data frame of
// such a stream only once it fits: the capture's unread bytes stay within
// max(limit, one frame). The session waits meanwhile (every stream on it
// does), which is how a capture's agents are held back when its readers
// fall behind.
type Unread struct {
	limit int64
	// kept counts the streams that keep yamux's receive buffer between
	// frames, keepBuffers at most; the others give it back as soon as it
	// is empty.
	kept        atomic.Int32
	keepBuffers int32

	mu      sync.Mutex
	held    int64
	waiters int
	freed   chan struct{} // closed and replaced when held shrinks while someone waits
}

// NewUnread returns an Unread that admits limit bytes at once. Its first
// keepBuffers streams keep yamux's receive buffer between frames. A
// buffer keeps the size of the largest frame its stream took, twice over,
// also while the stream waits: a capture of hundreds of instances would
// hold hundreds of them. Given back, a buffer is allocated anew, zeroed,
// for every frame: on loopback one stream's throughput fell to a quarter.
// A stream's buffer is at most about MaxBuffer.
func NewUnread(limit, keepBuffers int) *Unread {
	return &Unread{limit: int64(limit), keepBuffers: int32(keepBuffers), freed: make(chan struct{})}
}

// MaxBuffer is the most yamux's receive buffer of a stream holds between
// frames: twice the largest frame (one window) and the slack of its
// growth.
const MaxBuffer = 2*muxconfig.APIStreamWindow + 512

// fits reports whether n more bytes may be admitted: within the limit,
// or nothing is held (a frame larger than the limit must pass too).
func (u *Unread) fits(n int64) bool { return u.held == 0 || u.held+n <= u.limit }

// tryAdmit admits n bytes if they fit now.
func (u *Unread) tryAdmit(n int64) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if !u.fits(n) {
		return false
	}
	u.held += n
	return true
}

// admit waits until n bytes fit and admits them; false if done closed
// first.
func (u *Unread) admit(n int64, done <-chan struct{}) bool {
	u.mu.Lock()
	for !u.fits(n) {
		freed := u.freed
		u.waiters++
		u.mu.Unlock()
		select {
		case <-freed:
		case <-done:
			u.mu.Lock()
			u.waiters--
			u.mu.Unlock()
			return false
		}
		u.mu.Lock()
		u.waiters--
	}
	u.held += n
	u.mu.Unlock()
	return true
}

// release gives back n bytes: read, or let go with their stream.
func (u *Unread) release(n int64) {
	if n <= 0 {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	u.held -= n
	if u.waiters > 0 {
		close(u.freed)
		u.freed = make(chan struct{})
	}
}

// keepBuffer reports whether a new stream may keep its buffer, and
// counts it if so.
func (u *Unread) keepBuffer() bool {
	if u.kept.Add(1) <= u.keepBuffers {
		return true
	}
	u.kept.Add(-1)
	return false
}

// Held is what is admitted and not read yet.
func (u *Unread) Held() int64 {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.held
}

// yamux's frame header (its spec.md): version, type, flags, stream id,
// length; a data frame's body of length bytes follows it.
const (
	yamuxHeaderSize = 12
	yamuxTypeData   = 0
)

// frameGate is the connection a session's yamux reads from. It passes
// yamux's frames through as they come, except the bodies of data frames
// of limited streams (see Unread): such a frame waits, header and all,
// until its body fits in its capture's Unread; and the body of a stream
// the capture has let go is dropped, its header passed with length 0 (its
// flags still count), so that yamux buffers nothing nobody will read. A
// frame waits before any of it passes, when yamux's receive loop is
// between frames and holds no stream's lock: the readers it waits for can
// always read.
//
// Streams are registered as the API opens them, one at a time per
// session (Agent.open): a data frame of a stream the API has opened and
// not registered yet waits for its registration, so that a quick agent
// cannot slip a window past its capture's Unread.
type frameGate struct {
	net.Conn
	done      chan struct{}
	closeOnce sync.Once

	mu      sync.Mutex
	streams map[uint32]*limitedStream
	// highest is the highest stream id the API has registered; ids the
	// API opens grow.
	highest    uint32
	registered chan struct{} // closed and replaced on every registration

	// The read side, yamux's receive loop's alone. The gate has no
	// buffer of its own but for a frame that waits: it reads into
	// yamux's, so that an idle session costs nothing more.
	hdr     [yamuxHeaderSize]byte // the header being decided on
	carry   [yamuxHeaderSize]byte // the start of a header a read cut off
	ncarry  int
	pending []byte // read, after a header that waits
	body    int    // body bytes of the current frame still to pass or drop
	drop    bool   // the current body is dropped
	waiting bool   // the header in hdr waits
	emit    bool   // the header in hdr passes first
}

func newFrameGate(c net.Conn) *frameGate {
	return &frameGate{Conn: c, done: make(chan struct{}), streams: map[uint32]*limitedStream{}, registered: make(chan struct{})}
}

// Close ends every wait and closes the connection.
func (g *frameGate) Close() error {
	g.closeOnce.Do(func() { close(g.done) })
	return g.Conn.Close()
}

func (g *frameGate) Read(p []byte) (int, error) {
	for {
		if n, err := g.pass(p); n > 0 || err != nil {
			return n, err
		}
	}
}

// pass reads into p and moves to its front what may pass, up to a frame
// that must wait: it waits at the start of the next call, when what came
// before has reached yamux. p must hold two headers; yamux reads through
// a bufio.Reader, 4 KiB at the least.
func (g *frameGate) pass(p []byte) (int, error) {
	if len(p) < 2*yamuxHeaderSize {
		return 0, io.ErrShortBuffer
	}
	if g.waiting {
		if err := g.wait(); err != nil {
			return 0, err
		}
	}
	out := 0
	if g.emit {
		out = copy(p, g.hdr[:])
		g.emit = false
	}
	// The input: a header cut off last time, then what waited, or else
	// what the connection has.
	start := out
	n := copy(p[start:], g.carry[:g.ncarry])
	g.ncarry = 0
	var err error
	switch {
	case len(g.pending) > 0:
		m := copy(p[start+n:], g.pending)
		if g.pending = g.pending[m:]; len(g.pending) == 0 {
			g.pending = nil
		}
		n += m
	case out == 0 || n > 0:
		var m int
		m, err = g.Conn.Read(p[start+n:])
		n += m
	}
	in := p[start : start+n]
	for i := 0; i < len(in); {
		if g.body > 0 {
			k := min(g.body, len(in)-i)
			if !g.drop {
				if out != start+i {
					copy(p[out:], in[i:i+k])
				}
				out += k
			}
			i += k
			g.body -= k
			continue
		}
		if len(in)-i < yamuxHeaderSize {
			g.ncarry = copy(g.carry[:], in[i:])
			break
		}
		copy(g.hdr[:], in[i:i+yamuxHeaderSize])
		i += yamuxHeaderSize
		if !g.decide() {
			g.pending = append(bytes.Clone(in[i:]), g.pending...)
			return out, err
		}
		// The header passes, length zeroed if its body is dropped; it
		// lands no further than where it was read.
		out += copy(p[out:], g.hdr[:])
	}
	return out, err
}

// decide looks at the complete header in hdr: it passes (true), or its
// frame waits.
func (g *frameGate) decide() bool {
	id := binary.BigEndian.Uint32(g.hdr[4:8])
	length := binary.BigEndian.Uint32(g.hdr[8:12])
	g.drop = false
	if g.hdr[1] != yamuxTypeData || length == 0 {
		return true
	}
	g.body = int(length)
	ls, known := g.lookup(id)
	switch {
	case !known:
		g.waiting = true
		return false
	case ls == nil:
	case ls.released():
		g.letGo()
	case ls.unread.tryAdmit(int64(length)):
		if !ls.admitted(int64(length)) {
			g.letGo()
		}
	default:
		g.waiting = true
		return false
	}
	return true
}

// letGo drops the current frame's body and passes its header empty.
func (g *frameGate) letGo() {
	g.drop = true
	binary.BigEndian.PutUint32(g.hdr[8:12], 0)
}

// wait waits until the waiting frame may pass.
func (g *frameGate) wait() error {
	id := binary.BigEndian.Uint32(g.hdr[4:8])
	length := int64(g.body)
	for {
		ls, known := g.lookup(id)
		if known {
			switch {
			case ls == nil:
			case ls.released():
				g.letGo()
			case !ls.unread.admit(length, g.done):
				return net.ErrClosed
			case !ls.admitted(length):
				g.letGo()
			}
			g.waiting = false
			g.emit = true
			return nil
		}
		g.mu.Lock()
		registered := g.registered
		g.mu.Unlock()
		select {
		case <-registered:
		case <-g.done:
			return net.ErrClosed
		}
	}
}

// lookup finds the limited stream id belongs to: nil for a stream that
// is not limited (the control stream, a stop stream, one yamux does not
// know); known is false for a stream the API is opening and has not
// registered yet.
func (g *frameGate) lookup(id uint32) (ls *limitedStream, known bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if ls, ok := g.streams[id]; ok {
		return ls, true
	}
	// The API opens even ids, the agent odd ones.
	return nil, id%2 == 1 || id <= g.highest
}

// register notes a stream the API opened; ls is nil for one that is not
// limited.
func (g *frameGate) register(id uint32, ls *limitedStream) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if ls != nil {
		g.streams[id] = ls
	}
	g.highest = max(g.highest, id)
	close(g.registered)
	g.registered = make(chan struct{})
	// Streams let go long ago are gone from yamux too: it discards what
	// comes for them.
	for id, s := range g.streams {
		if s.expired() {
			delete(g.streams, id)
		}
	}
}

// limitedStream is a capture stream whose unread bytes count against its
// capture's Unread from its registration until the capture lets it go
// (Close): what it reads gives room back, and on Close what it still owes
// is given back and whatever the agent sends after is dropped.
type limitedStream struct {
	*yamux.Stream
	unread *Unread
	// keepBuffer: the stream keeps yamux's receive buffer between
	// frames (see NewUnread).
	keepBuffer bool

	mu     sync.Mutex
	owed   int64     // admitted and not read yet
	closed time.Time // when the capture let it go
}

func (s *limitedStream) Read(p []byte) (int, error) {
	n, err := s.Stream.Read(p)
	if !s.keepBuffer {
		s.Stream.Shrink()
	}
	if n > 0 {
		s.mu.Lock()
		d := int64(0)
		if s.closed.IsZero() {
			// What arrived before the stream was registered was never
			// admitted.
			d = min(int64(n), s.owed)
			s.owed -= d
		}
		s.mu.Unlock()
		s.unread.release(d)
	}
	return n, err
}

// Close lets the stream go and closes it.
func (s *limitedStream) Close() error {
	s.mu.Lock()
	d := int64(0)
	first := s.closed.IsZero()
	if first {
		s.closed = time.Now()
		d, s.owed = s.owed, 0
	}
	s.mu.Unlock()
	if first && s.keepBuffer {
		s.unread.kept.Add(-1)
	}
	s.unread.release(d)
	return s.Stream.Close()
}

// admitted records n bytes admitted for the stream; false if it has been
// let go meanwhile: they are given back, and the body is dropped.
func (s *limitedStream) admitted(n int64) bool {
	s.mu.Lock()
	kept := s.closed.IsZero()
	if kept {
		s.owed += n
	}
	s.mu.Unlock()
	if !kept {
		s.unread.release(n)
	}
	return kept
}

func (s *limitedStream) released() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.closed.IsZero()
}

// expired reports whether yamux has surely forgotten the stream: it was
// let go longer ago than yamux waits for the agent's close.
func (s *limitedStream) expired() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.closed.IsZero() && time.Since(s.closed) > 2*muxconfig.StreamCloseTimeout
}
