package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
)

const (
	// DeviceHeaderSize is what a DevicePackets payload holds before its
	// records: the device index.
	DeviceHeaderSize = 1
	// MaxDevices is the most devices one capture stream may carry.
	MaxDevices = 4
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

// Batch accumulates packet records into a ready-to-send Packets frame, or
// a DevicePackets frame for a batch of one device of several. Its buffer
// starts with room for the frame header (and the device index), so
// sending it costs no copy. The zero Batch is a Packets batch, ready to
// use.
type Batch struct {
	buf   []byte
	count int
	// tagged batches are DevicePackets frames of device.
	tagged bool
	device uint8
}

// NewBatch returns an empty Packets batch whose buffer holds payloadCap
// bytes of records without growing.
func NewBatch(payloadCap int) *Batch {
	return &Batch{buf: make([]byte, HeaderSize, HeaderSize+payloadCap)}
}

// NewDeviceBatch returns an empty DevicePackets batch of device (an index
// below MaxDevices) whose buffer holds payloadCap bytes of records without
// growing.
func NewDeviceBatch(device, payloadCap int) *Batch {
	b := &Batch{tagged: true, device: uint8(device)}
	b.buf = make([]byte, b.start(), b.start()+payloadCap)
	return b
}

// start is where the records begin in buf: after the frame header and,
// in a DevicePackets frame, the device index.
func (b *Batch) start() int {
	if b.tagged {
		return HeaderSize + DeviceHeaderSize
	}
	return HeaderSize
}

func (b *Batch) frameType() Type {
	if b.tagged {
		return TypeDevicePackets
	}
	return TypePackets
}

func (b *Batch) init() {
	if b.buf == nil {
		b.buf = make([]byte, b.start(), b.start()+64<<10)
	}
}

// Append adds a packet. The caller must have checked Fits.
func (b *Batch) Append(ts int64, length int, data []byte) {
	b.init()
	b.buf = binary.BigEndian.AppendUint64(b.buf, uint64(ts))
	b.buf = binary.BigEndian.AppendUint32(b.buf, uint32(len(data)))
	b.buf = binary.BigEndian.AppendUint32(b.buf, uint32(length))
	b.buf = append(b.buf, data...)
	b.count++
}

// Fits reports whether a packet with n captured bytes can be added without
// exceeding MaxPayload.
func (b *Batch) Fits(n int) bool {
	return b.start()-HeaderSize+b.Size()+RecordHeaderSize+n <= MaxPayload
}

// Size is the size of the records so far.
func (b *Batch) Size() int {
	return max(len(b.buf)-b.start(), 0)
}

// Count is the number of packets in the batch.
func (b *Batch) Count() int { return b.count }

// Spare is the unused part of the batch's buffer. A reader that encodes
// records itself (the agent's libpcap callback) writes them there, in the
// layout of a Packets payload, and adds them with Commit.
func (b *Batch) Spare() []byte {
	b.init()
	return b.buf[len(b.buf):cap(b.buf)]
}

// Commit adds count records, n bytes in all, written at the start of
// Spare.
func (b *Batch) Commit(n, count int) {
	b.buf = b.buf[:len(b.buf)+n]
	b.count += count
}

// Cap is the size of records the batch's buffer holds without growing:
// the memory it keeps.
func (b *Batch) Cap() int { return max(cap(b.buf)-b.start(), 0) }

// Reset empties the batch and keeps its buffer.
func (b *Batch) Reset() {
	if b.buf != nil {
		b.buf = b.buf[:b.start()]
	}
	b.count = 0
}

// Frame fills in the header (and the device index) and returns the whole
// frame, aliasing the batch's buffer.
func (b *Batch) Frame() []byte {
	b.init()
	appendHeader(b.buf[:0], b.frameType(), len(b.buf)-HeaderSize)
	if b.tagged {
		b.buf[HeaderSize] = b.device
	}
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

// DeviceRecords splits a DevicePackets payload into its device index
// (below MaxDevices) and its records, which are laid out as in a Packets
// payload and are not checked here.
func DeviceRecords(payload []byte) (device int, records []byte, err error) {
	if len(payload) < DeviceHeaderSize {
		return 0, nil, fmt.Errorf("%w: device packets frame without a device index", ErrMalformedPackets)
	}
	if d := int(payload[0]); d >= MaxDevices {
		return 0, nil, fmt.Errorf("%w: device index %d, at most %d devices", ErrMalformedPackets, d, MaxDevices)
	}
	return int(payload[0]), payload[DeviceHeaderSize:], nil
}

// DecodeDevicePackets is DecodePackets for a DevicePackets payload: it
// also returns the payload's device index.
func DecodeDevicePackets(payload []byte, dst []Packet) (int, []Packet, error) {
	device, records, err := DeviceRecords(payload)
	if err != nil {
		return 0, dst, err
	}
	dst, err = DecodePackets(records, dst)
	return device, dst, err
}

// CountPackets checks a Packets payload as DecodePackets does and returns
// how many records it holds, without decoding them.
func CountPackets(payload []byte) (int, error) {
	n := 0
	for off := 0; off < len(payload); n++ {
		rest := len(payload) - off
		if rest < RecordHeaderSize {
			return 0, strayBytes(rest, off)
		}
		// recordHeader rather than RecordAt: one call per record on the
		// API's per-packet path.
		rec, err := recordHeader(payload[off:off+RecordHeaderSize], off, rest)
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
		return Record{}, strayBytes(len(rest), off)
	}
	return recordHeader(rest[:RecordHeaderSize], off, len(rest))
}

// recordHeader checks the header h of the record at offset off, which
// has rest bytes from its start to the end of the payload: the checks
// RecordAt, CountPackets and the streaming check of DiscardPackets share.
func recordHeader(h []byte, off, rest int) (Record, error) {
	capLen := binary.BigEndian.Uint32(h[8:])
	origLen := binary.BigEndian.Uint32(h[12:])
	if capLen > MaxSnaplen || origLen < capLen || int(capLen) > rest-RecordHeaderSize {
		return Record{}, badRecord(off, capLen, origLen, rest)
	}
	return Record{Timestamp: int64(binary.BigEndian.Uint64(h)), CapLen: int(capLen), Length: int(origLen)}, nil
}

func strayBytes(n, off int) error {
	return fmt.Errorf("%w: %d stray bytes at offset %d", ErrMalformedPackets, n, off)
}

func badRecord(off int, capLen, origLen uint32, rest int) error {
	switch {
	case capLen > MaxSnaplen:
		return fmt.Errorf("%w: record at offset %d captures %d bytes, maximum %d", ErrMalformedPackets, off, capLen, MaxSnaplen)
	case origLen < capLen:
		return fmt.Errorf("%w: record at offset %d captures %d bytes of a %d-byte packet", ErrMalformedPackets, off, capLen, origLen)
	}
	return fmt.Errorf("%w: record at offset %d needs %d bytes, %d left", ErrMalformedPackets, off, capLen, rest-RecordHeaderSize)
}
