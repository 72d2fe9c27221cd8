package tunnel

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"slices"
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
// such a stream only as it arrives and fits, in pieces of its own (see
// frameGate): the capture's unread bytes stay within max(limit, one
// read). The session waits meanwhile (every stream on it does), which is
// how a capture's agents are held back when its readers fall behind.
// Sessions wait their turn: the first to wait is the first let through.
type Unread struct {
	limit int64
	// kept counts the streams that keep yamux's receive buffer between
	// frames, keepBuffers at most; the others give it back as soon as it
	// is empty.
	kept        atomic.Int32
	keepBuffers int32

	mu    sync.Mutex
	held  int64
	queue []*admission // the pieces waiting for room, in their order of arrival
}

// admission is a piece of a frame waiting for room in an Unread.
type admission struct {
	n       int64
	granted chan struct{} // closed once its n bytes are admitted
}

// NewUnread returns an Unread that admits limit bytes at once. Its first
// keepBuffers streams keep yamux's receive buffer between frames. A
// buffer keeps the size of the largest frame its stream took, twice over,
// also while the stream waits: a capture of hundreds of instances would
// hold hundreds of them. Given back, a buffer is allocated anew, zeroed,
// for every frame: on loopback one stream's throughput fell to a quarter.
// A stream's buffer is at most about MaxBuffer(limit).
func NewUnread(limit, keepBuffers int) *Unread {
	return &Unread{limit: int64(limit), keepBuffers: int32(keepBuffers)}
}

// MaxBuffer is the most yamux's receive buffer of a stream holds between
// frames when its capture's Unread admits limit bytes: the buffer holds
// no more than was admitted and not read (limit, and one piece beyond it
// when nothing else is held), and grows to twice what it holds, with some
// slack.
func MaxBuffer(limit int) int { return 2*(limit+maxPiece) + 512 }

// fits reports whether n more bytes may be admitted: within the limit,
// or nothing is held (a piece larger than the limit must pass too).
func (u *Unread) fits(n int64) bool { return u.held == 0 || u.held+n <= u.limit }

// tryAdmit admits n bytes if they fit now and nobody waits before them.
func (u *Unread) tryAdmit(n int64) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.queue) > 0 || !u.fits(n) {
		return false
	}
	u.held += n
	return true
}

// admit waits its turn and room for n bytes and admits them; false if
// done or gone closed first (the session ended, or the stream was let
// go), with nothing admitted.
func (u *Unread) admit(n int64, done, gone <-chan struct{}) bool {
	u.mu.Lock()
	if len(u.queue) == 0 && u.fits(n) {
		u.held += n
		u.mu.Unlock()
		return true
	}
	a := &admission{n: n, granted: make(chan struct{})}
	u.queue = append(u.queue, a)
	u.mu.Unlock()
	select {
	case <-a.granted:
		return true
	case <-done:
	case <-gone:
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	select {
	case <-a.granted:
		// Admitted as it gave up: give the room to the next.
		u.held -= n
	default:
		u.queue = slices.DeleteFunc(u.queue, func(w *admission) bool { return w == a })
	}
	u.grantLocked()
	return false
}

// grantLocked admits the waiting pieces that fit, in their order.
func (u *Unread) grantLocked() {
	for len(u.queue) > 0 && u.fits(u.queue[0].n) {
		a := u.queue[0]
		u.queue[0] = nil
		u.queue = u.queue[1:]
		u.held += a.n
		close(a.granted)
	}
}

// release gives back n bytes: read, or let go with their stream.
func (u *Unread) release(n int64) {
	if n <= 0 {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	u.held -= n
	u.grantLocked()
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
	// The flags that open a stream, and those that close it.
	yamuxOpenFlags  = 0x1 | 0x2 // SYN, ACK
	yamuxCloseFlags = 0x4 | 0x8 // FIN, RST
)

// maxPiece is the most of a limited stream's body the gate reads ahead
// to pass as one piece: a TLS record's plaintext, what one read of the
// connection gives at most.
const maxPiece = 16 << 10

// pieces are the buffers the gates of a server read limited streams'
// bodies into, shared: a session holds one only while it reads such a
// frame, and a fast stream's frames must not allocate one each.
type pieces struct{ pool sync.Pool }

func newPieces() *pieces {
	return &pieces{pool: sync.Pool{New: func() any { return new([maxPiece]byte) }}}
}

func (p *pieces) get() *[maxPiece]byte  { return p.pool.Get().(*[maxPiece]byte) }
func (p *pieces) put(b *[maxPiece]byte) { p.pool.Put(b) }

// bodyMode is what becomes of the body of the frame being read.
type bodyMode uint8

const (
	bodyPass    bodyMode = iota // passed as it is
	bodyDrop                    // dropped: its stream was let go
	bodyReframe                 // passed in pieces, each once it arrived and fits
)

// frameGate is the connection a session's yamux reads from. It passes
// yamux's frames through as they come, except the data frames of limited
// streams (see Unread). Such a frame passes in pieces, data frames of
// their own: each holds the body bytes the gate has in hand, once they
// fit in the capture's Unread; the first piece has the frame's SYN and
// ACK, the last its FIN and RST, and together they are as long as the
// frame, so that yamux's window accounts as before. A piece waits before
// any of it passes, when yamux's receive loop is between frames and holds
// no stream's lock: the readers it waits for can always read. Only bytes
// that arrived count: an agent whose frame arrives slowly holds its
// capture's allowance no longer than its readers take to read what came.
// The body of a stream the capture has let go is dropped, its header
// passed with length 0 (its flags still count), so that yamux buffers
// nothing nobody will read.
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

	// The read side, yamux's receive loop's alone. The gate reads into
	// yamux's buffer, so that an idle session costs nothing more; it
	// holds input of its own only while a limited stream's frame is read.
	hdr     [yamuxHeaderSize]byte // the current frame's header, as it came
	carry   [yamuxHeaderSize]byte // the start of a header a read cut off
	ncarry  int
	pending []byte // input read and not looked at yet
	body    int    // body bytes of the current frame still to come
	mode    bodyMode
	ls      *limitedStream // the current frame's stream, if limited
	first   bool           // no piece of the current frame has passed yet
	waiting bool           // the header in hdr waits for its stream's registration
	out     []byte         // what passes before anything else
	outHdr  [yamuxHeaderSize]byte
	pieces  *pieces
	piece   *[maxPiece]byte // where a limited stream's body is read ahead, while it is
}

func newFrameGate(c net.Conn, pieces *pieces) *frameGate {
	return &frameGate{Conn: c, done: make(chan struct{}), streams: map[uint32]*limitedStream{}, registered: make(chan struct{}), pieces: pieces}
}

// Close ends every wait and closes the connection.
func (g *frameGate) Close() error {
	g.closeOnce.Do(func() { close(g.done) })
	return g.Conn.Close()
}

func (g *frameGate) Read(p []byte) (int, error) {
	if len(p) < 2*yamuxHeaderSize {
		return 0, io.ErrShortBuffer
	}
	for {
		if n, err := g.pass(p); n > 0 || err != nil {
			return n, err
		}
	}
}

// pass reads into p and moves to its front what may pass, up to a frame
// or a piece that must wait: it waits at the start of a later call, when
// what came before has reached yamux. p must hold two headers; yamux
// reads through a bufio.Reader, 4 KiB at the least.
func (g *frameGate) pass(p []byte) (int, error) {
	if len(g.out) > 0 {
		n := copy(p, g.out)
		g.out = g.out[n:]
		return n, nil
	}
	if g.waiting {
		return 0, g.waitRegistration()
	}
	if g.body > 0 && g.mode == bodyReframe {
		return g.passPiece(p)
	}
	// The input: a header cut off last time, then what was read ahead,
	// or else what the connection has.
	n := copy(p, g.carry[:g.ncarry])
	g.ncarry = 0
	var err error
	if len(g.pending) > 0 {
		m := copy(p[n:], g.pending)
		if g.pending = g.pending[m:]; len(g.pending) == 0 {
			g.pending = nil
		}
		n += m
	} else {
		// Between limited frames the gate holds nothing of its own.
		if g.piece != nil {
			g.pieces.put(g.piece)
			g.piece = nil
		}
		var m int
		m, err = g.Conn.Read(p[n:])
		n += m
	}
	in := p[:n]
	out := 0
	for i := 0; i < len(in); {
		if g.body > 0 {
			k := min(g.body, len(in)-i)
			if g.mode != bodyDrop {
				out += copy(p[out:], in[i:i+k])
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
		if !g.decide(len(in) - i) {
			// The rest is looked at again once the frame may go on.
			g.stash(in[i:])
			return out, err
		}
		// The header passes, length zeroed if its body is dropped; it
		// lands no further than where it was read.
		out += copy(p[out:], g.hdr[:])
	}
	return out, err
}

// stash keeps b to be looked at again before what is pending.
func (g *frameGate) stash(b []byte) {
	if len(g.pending) > 0 || len(b) > maxPiece {
		g.pending = append(bytes.Clone(b), g.pending...)
		return
	}
	// What the connection gave into yamux's buffer, all of it: the piece
	// is free, and the frame's body is read on into it.
	if g.piece == nil {
		g.piece = g.pieces.get()
	}
	g.pending = g.piece[:copy(g.piece[:], b)]
}

// decide looks at the complete header in hdr, of which inHand body bytes
// follow in this read: it passes as it is, its body too (true); or its
// frame waits, or passes in pieces (false).
func (g *frameGate) decide(inHand int) bool {
	id := binary.BigEndian.Uint32(g.hdr[4:8])
	length := binary.BigEndian.Uint32(g.hdr[8:12])
	g.mode = bodyPass
	g.ls = nil
	if g.hdr[1] != yamuxTypeData || length == 0 {
		return true
	}
	g.body = int(length)
	ls, known := g.lookup(id)
	if !known {
		g.waiting = true
		return false
	}
	g.follow(ls)
	if g.mode != bodyReframe {
		return true
	}
	// The whole body in hand and room for it: one piece, the frame as it
	// came.
	if g.body <= inHand && ls.unread.tryAdmit(int64(g.body)) {
		if !ls.admitted(int64(g.body)) {
			g.letGo()
		} else {
			g.mode = bodyPass
		}
		return true
	}
	return false
}

// follow sets what becomes of the current frame's body, of stream ls.
func (g *frameGate) follow(ls *limitedStream) {
	g.ls = ls
	g.first = true
	switch {
	case ls == nil:
		g.mode = bodyPass
	case ls.released():
		g.letGo()
	default:
		g.mode = bodyReframe
	}
}

// letGo drops the rest of the current frame's body and sets hdr to pass
// its flags yet to pass, length 0.
func (g *frameGate) letGo() {
	g.mode = bodyDrop
	flags := binary.BigEndian.Uint16(g.hdr[2:4])
	if !g.first {
		flags &= yamuxCloseFlags
	}
	binary.BigEndian.PutUint16(g.hdr[2:4], flags)
	binary.BigEndian.PutUint32(g.hdr[8:12], 0)
}

// waitRegistration waits until the stream of the frame in hdr is
// registered, and then lets its header pass, or its first piece.
func (g *frameGate) waitRegistration() error {
	id := binary.BigEndian.Uint32(g.hdr[4:8])
	for {
		ls, known := g.lookup(id)
		if known {
			g.waiting = false
			g.follow(ls)
			if g.mode != bodyReframe {
				g.outHdr = g.hdr
				g.out = g.outHdr[:]
			}
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

// passPiece passes the next piece of a limited stream's frame: the body
// bytes in hand, or else what one read of the connection gives, once
// they fit in the capture's Unread.
func (g *frameGate) passPiece(p []byte) (int, error) {
	if len(g.pending) == 0 {
		if g.piece == nil {
			g.piece = g.pieces.get()
		}
		n, err := g.Conn.Read(g.piece[:min(g.body, maxPiece)])
		if n == 0 {
			return 0, err
		}
		g.pending = g.piece[:n]
	}
	k := min(g.body, len(g.pending))
	body := g.pending[:k]
	ls := g.ls
	if ls.released() || !ls.unread.admit(int64(k), g.done, ls.gone) {
		select {
		case <-g.done:
			return 0, net.ErrClosed
		default:
		}
		// Let go while it waited: the rest of the body is dropped.
		g.letGo()
		return copy(p, g.hdr[:]), nil
	}
	if !ls.admitted(int64(k)) {
		g.letGo()
		return copy(p, g.hdr[:]), nil
	}
	if g.pending = g.pending[k:]; len(g.pending) == 0 {
		g.pending = nil
	}
	flags := binary.BigEndian.Uint16(g.hdr[2:4])
	last := k == g.body
	switch {
	case g.first && last:
	case g.first:
		flags &^= yamuxCloseFlags
	case last:
		flags &= yamuxCloseFlags
	default:
		flags = 0
	}
	g.first = false
	g.body -= k
	copy(p, g.hdr[:])
	binary.BigEndian.PutUint16(p[2:4], flags)
	binary.BigEndian.PutUint32(p[8:12], uint32(k))
	n := copy(p[yamuxHeaderSize:], body)
	// What p cannot hold passes next, before anything else: yamux reads
	// the piece's body to its end at once, and finds it in hand.
	g.out = body[n:]
	return yamuxHeaderSize + n, nil
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
	owed   int64         // admitted and not read yet
	closed time.Time     // when the capture let it go
	gone   chan struct{} // closed then: a piece waiting for room is dropped
}

func newLimitedStream(s *yamux.Stream, unread *Unread) *limitedStream {
	return &limitedStream{Stream: s, unread: unread, keepBuffer: unread.keepBuffer(), gone: make(chan struct{})}
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
	s.letGo()
	return s.Stream.Close()
}

// letGo gives back what the stream owes its capture and drops what comes
// for it from now on, a piece waiting for room too.
func (s *limitedStream) letGo() {
	s.mu.Lock()
	d := int64(0)
	first := s.closed.IsZero()
	if first {
		s.closed = time.Now()
		d, s.owed = s.owed, 0
		close(s.gone)
	}
	s.mu.Unlock()
	if first && s.keepBuffer {
		s.unread.kept.Add(-1)
	}
	s.unread.release(d)
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
