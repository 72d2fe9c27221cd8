package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
)

const (
	// RecordHeaderSize is the size of a packet record's header in a Packets
	// payload: timestamp, captured length, original length.
	RecordHeaderSize = 16
	// MaxSnaplen is the largest captured length a record may carry; it is
	// libpcap's own upper bound.
	MaxSnaplen = 262144
)

// ErrMalformedPackets is wrapped by every error about a Packets payload.
var ErrMalformedPackets = errors.New("malformed packets frame")

// Packet is one captured packet as carried in a Packets frame.
type Packet struct {
	// Timestamp is in nanoseconds since the Unix epoch, as libpcap reports
	// it with nanosecond precision.
	Timestamp int64
	// Length is the packet's length on the wire; len(Data) may be smaller
	// when the snaplen truncated it.
	Length int
	Data   []byte
}

// Batch accumulates packet records into a ready-to-send Packets frame. Its
// buffer starts with room for the frame header, so sending it costs no copy.
// The zero Batch is ready to use.
type Batch struct {
	buf   []byte
	count int
}

// NewBatch returns an empty batch whose buffer holds payloadCap bytes of
// records without growing.
func NewBatch(payloadCap int) *Batch {
	return &Batch{buf: make([]byte, HeaderSize, HeaderSize+payloadCap)}
}

// Append adds a packet. The caller must have checked Fits.
func (b *Batch) Append(ts int64, length int, data []byte) {
	if b.buf == nil {
		b.buf = make([]byte, HeaderSize, HeaderSize+64<<10)
	}
	b.buf = binary.BigEndian.AppendUint64(b.buf, uint64(ts))
	b.buf = binary.BigEndian.AppendUint32(b.buf, uint32(len(data)))
	b.buf = binary.BigEndian.AppendUint32(b.buf, uint32(length))
	b.buf = append(b.buf, data...)
	b.count++
}

// Fits reports whether a packet with n captured bytes can be added without
// exceeding MaxPayload.
func (b *Batch) Fits(n int) bool {
	return b.Size()+RecordHeaderSize+n <= MaxPayload
}

// Size is the payload size so far.
func (b *Batch) Size() int {
	if len(b.buf) < HeaderSize {
		return 0
	}
	return len(b.buf) - HeaderSize
}

// Count is the number of packets in the batch.
func (b *Batch) Count() int { return b.count }

// Spare is the unused part of the batch's buffer. A reader that encodes
// records itself (the agent's libpcap callback) writes them there, in the
// layout of a Packets payload, and adds them with Commit.
func (b *Batch) Spare() []byte {
	if b.buf == nil {
		b.buf = make([]byte, HeaderSize, HeaderSize+64<<10)
	}
	return b.buf[len(b.buf):cap(b.buf)]
}

// Commit adds count records, n bytes in all, written at the start of
// Spare.
func (b *Batch) Commit(n, count int) {
	b.buf = b.buf[:len(b.buf)+n]
	b.count += count
}

// Cap is the payload the batch's buffer holds without growing: the memory
// it keeps.
func (b *Batch) Cap() int { return max(cap(b.buf)-HeaderSize, 0) }

// Reset empties the batch and keeps its buffer.
func (b *Batch) Reset() {
	if b.buf != nil {
		b.buf = b.buf[:HeaderSize]
	}
	b.count = 0
}

// Frame fills in the header and returns the whole frame, aliasing the
// batch's buffer.
func (b *Batch) Frame() []byte {
	if b.buf == nil {
		b.buf = make([]byte, HeaderSize)
	}
	appendHeader(b.buf[:0], TypePackets, b.Size())
	return b.buf
}

// DecodePackets appends the packets of a Packets payload to dst. The Data
// slices alias payload. On a malformed payload it returns dst unchanged
// and an error: a frame is used whole or not at all.
func DecodePackets(payload []byte, dst []Packet) ([]Packet, error) {
	start := len(dst)
	for off := 0; off < len(payload); {
		rec, err := RecordAt(payload, off)
		if err != nil {
			return dst[:start], err
		}
		end := off + rec.Size()
		dst = append(dst, Packet{Timestamp: rec.Timestamp, Length: rec.Length, Data: payload[off+RecordHeaderSize : end : end]})
		off = end
	}
	return dst, nil
}

// CountPackets checks a Packets payload as DecodePackets does and returns
// how many records it holds, without decoding them.
func CountPackets(payload []byte) (int, error) {
	n := 0
	for off := 0; off < len(payload); n++ {
		rec, err := RecordAt(payload, off)
		if err != nil {
			return 0, err
		}
		off += rec.Size()
	}
	return n, nil
}

// Record is the header of one packet record.
type Record struct {
	Timestamp int64
	// CapLen bytes of data follow the header; Length is the packet's
	// length on the wire.
	CapLen, Length int
}

// Size is the record's size in the payload, header included.
func (r Record) Size() int { return RecordHeaderSize + r.CapLen }

// RecordAt reads and checks the header of the record at offset off of a
// Packets payload: the record must fit in the payload and its lengths
// must agree.
func RecordAt(payload []byte, off int) (Record, error) {
	rest := payload[off:]
	if len(rest) < RecordHeaderSize {
		return Record{}, fmt.Errorf("%w: %d stray bytes at offset %d", ErrMalformedPackets, len(rest), off)
	}
	capLen := binary.BigEndian.Uint32(rest[8:])
	origLen := binary.BigEndian.Uint32(rest[12:])
	switch {
	case capLen > MaxSnaplen:
		return Record{}, fmt.Errorf("%w: record at offset %d captures %d bytes, maximum %d", ErrMalformedPackets, off, capLen, MaxSnaplen)
	case origLen < capLen:
		return Record{}, fmt.Errorf("%w: record at offset %d captures %d bytes of a %d-byte packet", ErrMalformedPackets, off, capLen, origLen)
	case int(capLen) > len(rest)-RecordHeaderSize:
		return Record{}, fmt.Errorf("%w: record at offset %d needs %d bytes, %d left", ErrMalformedPackets, off, capLen, len(rest)-RecordHeaderSize)
	}
	return Record{Timestamp: int64(binary.BigEndian.Uint64(rest)), CapLen: int(capLen), Length: int(origLen)}, nil
}
