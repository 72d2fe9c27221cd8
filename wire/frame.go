package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
)

// Type identifies what a frame's payload is.
type Type uint8

// Frame types. The numbers are part of the protocol; never reuse one.
const (
	TypeHello          Type = 1  // agent → API, control stream
	TypeWelcome        Type = 2  // API → agent, control stream
	TypeRefused        Type = 3  // API → agent, control stream
	TypeCaptureRequest Type = 4  // API → agent, capture stream
	TypeStarted        Type = 5  // agent → API
	TypeError          Type = 6  // agent → API, instead of Started
	TypePackets        Type = 7  // agent → API, binary payload
	TypeStats          Type = 8  // agent → API
	TypeStop           Type = 9  // API → agent
	TypeEnd            Type = 10 // agent → API, last frame of a capture
	TypeStopCapture    Type = 11 // API → agent, opens a stop stream (version 2)
	TypeStopResult     Type = 12 // agent → API, answers StopCapture (version 2)
	TypeDevicePackets  Type = 13 // agent → API, binary payload of one device of several (version 2)
)

var typeNames = [...]string{
	TypeHello:          "hello",
	TypeWelcome:        "welcome",
	TypeRefused:        "refused",
	TypeCaptureRequest: "capture_request",
	TypeStarted:        "started",
	TypeError:          "error",
	TypePackets:        "packets",
	TypeStats:          "stats",
	TypeStop:           "stop",
	TypeEnd:            "end",
	TypeStopCapture:    "stop_capture",
	TypeStopResult:     "stop_result",
	TypeDevicePackets:  "device_packets",
}

func (t Type) String() string {
	if int(t) < len(typeNames) && typeNames[t] != "" {
		return typeNames[t]
	}
	return fmt.Sprintf("unknown(%d)", uint8(t))
}

// Known reports whether this version of the protocol defines t.
func (t Type) Known() bool {
	return int(t) < len(typeNames) && typeNames[t] != ""
}

const (
	// HeaderSize is the size of a frame header: type and payload length.
	HeaderSize = 5
	// MaxPayload is the largest payload a frame may carry. It bounds what a
	// receiver allocates for one frame, and it is large enough for a batch
	// of several packets at the largest snaplen.
	MaxPayload = 1 << 20
	// MaxControlPayload is the largest control frame an agent sends on a
	// capture stream (Started, Error, Stats, End): counters, a few names
	// and messages of at most MaxMessage. It lets the API read each into
	// a small buffer; a larger one breaks the stream.
	MaxControlPayload = 32 << 10
)

// ErrFrameTooLarge is returned for a header announcing more than MaxPayload.
var ErrFrameTooLarge = errors.New("frame larger than the protocol maximum")

// Frame is one decoded frame. Payload aliases the Reader's buffer and is
// valid only until the next call to Next.
type Frame struct {
	Type    Type
	Payload []byte
}

// Reader reads frames from a stream, reusing one payload buffer.
type Reader struct {
	r   io.Reader
	hdr [HeaderSize]byte
	buf []byte
}

// NewReader returns a Reader on r. It does no buffering of its own: yamux
// streams already buffer what the peer sent.
func NewReader(r io.Reader) *Reader {
	return &Reader{r: r}
}

// Next reads the next frame. At a clean end of the stream it returns
// io.EOF; a stream that ends inside a frame gives io.ErrUnexpectedEOF.
func (r *Reader) Next() (Frame, error) {
	typ, n, err := r.NextHeader()
	if err != nil {
		return Frame{}, err
	}
	if cap(r.buf) < n {
		r.buf = make([]byte, n)
	}
	r.buf = r.buf[:n]
	if err := r.ReadPayload(typ, r.buf); err != nil {
		return Frame{}, err
	}
	return Frame{Type: typ, Payload: r.buf}, nil
}

// NextHeader reads the next frame's header: its type and payload length,
// at most MaxPayload. The caller then reads the payload with ReadPayload
// into a buffer of its choice, so that it can keep the payload without a
// copy.
func (r *Reader) NextHeader() (Type, int, error) {
	if _, err := io.ReadFull(r.r, r.hdr[:]); err != nil {
		return 0, 0, err
	}
	typ := Type(r.hdr[0])
	n := binary.BigEndian.Uint32(r.hdr[1:])
	if n > MaxPayload {
		return 0, 0, fmt.Errorf("%w: %s frame of %d bytes, maximum %d", ErrFrameTooLarge, typ, n, MaxPayload)
	}
	return typ, int(n), nil
}

// ReadPayload reads the payload of the frame whose header NextHeader
// returned; dst must be exactly as long as the payload.
func (r *Reader) ReadPayload(typ Type, dst []byte) error {
	if _, err := io.ReadFull(r.r, dst); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("read %s frame payload of %d bytes: %w", typ, len(dst), err)
	}
	return nil
}

// NextKnown is Next, skipping frames of types this version does not define.
// skipped is called for each skipped frame so that the caller can log it.
func (r *Reader) NextKnown(skipped func(Type)) (Frame, error) {
	for {
		f, err := r.Next()
		if err != nil || f.Type.Known() {
			return f, err
		}
		if skipped != nil {
			skipped(f.Type)
		}
	}
}

// Writer writes whole frames. Each frame goes out in a single Write call,
// so that concurrent senders (a stats ticker and the packet pump, say)
// never interleave and a yamux stream never carries half a frame.
type Writer struct {
	mu  sync.Mutex
	w   io.Writer
	buf []byte
}

// NewWriter returns a Writer on w.
func NewWriter(w io.Writer) *Writer {
	return &Writer{w: w}
}

// WriteFrame writes one frame of type t with payload p.
func (w *Writer) WriteFrame(t Type, p []byte) error {
	if len(p) > MaxPayload {
		return fmt.Errorf("write %s frame: %w: %d bytes", t, ErrFrameTooLarge, len(p))
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = appendHeader(w.buf[:0], t, len(p))
	w.buf = append(w.buf, p...)
	if _, err := w.w.Write(w.buf); err != nil {
		return fmt.Errorf("write %s frame: %w", t, err)
	}
	return nil
}

// WriteMessage encodes m and writes it as one frame.
func (w *Writer) WriteMessage(m Message) error {
	p, err := Marshal(m)
	if err != nil {
		return err
	}
	return w.WriteFrame(m.Type(), p)
}

// WriteBatch writes a packet batch (a Packets or DevicePackets frame).
// The batch already holds its frame header, so the packet bytes are not
// copied again.
func (w *Writer) WriteBatch(b *Batch) error {
	frame := b.Frame()
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, err := w.w.Write(frame); err != nil {
		return fmt.Errorf("write %s frame: %w", b.frameType(), err)
	}
	return nil
}

func appendHeader(b []byte, t Type, n int) []byte {
	b = append(b, byte(t))
	return binary.BigEndian.AppendUint32(b, uint32(n))
}
