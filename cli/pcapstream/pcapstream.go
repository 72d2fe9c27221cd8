// Package pcapstream copies a pcap or pcapng byte stream record by record,
// so that the copy only ever ends on a whole record: whatever cuts the
// stream (Ctrl-C, a lost connection, a crashed server), the file written
// so far is valid. It also counts packets on the way, for progress.
package pcapstream

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// MaxRecord bounds one record (a pcap packet or a pcapng block); nothing
// legitimate comes close, and it bounds what a broken stream can make us
// allocate.
const MaxRecord = 16 << 20

// Format of a stream, known after its first bytes.
type Format int

const (
	Unknown Format = iota
	Pcap
	Pcapng
)

func (f Format) String() string {
	switch f {
	case Pcap:
		return "pcap"
	case Pcapng:
		return "pcapng"
	}
	return "unknown"
}

// ErrFormat is wrapped by errors about the stream's content.
var ErrFormat = errors.New("not a valid pcap or pcapng stream")

// Progress is what has been copied so far.
type Progress struct {
	Format  Format
	Packets uint64
	// Bytes is the size of the copy.
	Bytes int64
	// Dropped is the latest total of the drop counters that pcapng
	// interface statistics blocks reported, summed over interfaces.
	Dropped uint64
}

// Copier copies one stream.
type Copier struct {
	src      *bufio.Reader
	dst      io.Writer
	progress Progress
	order    binary.ByteOrder
	buf      []byte
	// OnRecord, if set, is called after every whole record is written.
	OnRecord func(Progress)
	ifDrops  map[uint32]uint64
}

// NewCopier copies from src to dst.
func NewCopier(dst io.Writer, src io.Reader) *Copier {
	return &Copier{src: bufio.NewReaderSize(src, 64<<10), dst: dst, ifDrops: map[uint32]uint64{}}
}

// Progress returns what has been copied.
func (c *Copier) Progress() Progress { return c.progress }

// Copy copies until src ends. A clean end is a nil error; a stream cut
// inside a record returns io.ErrUnexpectedEOF (or the read error) and the
// partial record is not written.
func (c *Copier) Copy() error {
	magic, err := c.src.Peek(4)
	if err != nil {
		if errors.Is(err, io.EOF) && len(magic) == 0 {
			return fmt.Errorf("%w: empty stream", ErrFormat)
		}
		return c.cut(err)
	}
	switch {
	case binary.LittleEndian.Uint32(magic) == 0x0A0D0D0A:
		c.progress.Format = Pcapng
		return c.copyPcapng()
	default:
		switch binary.LittleEndian.Uint32(magic) {
		case 0xA1B2C3D4, 0xA1B23C4D:
			c.order = binary.LittleEndian
		case 0xD4C3B2A1, 0x4D3CB2A1:
			c.order = binary.BigEndian
		default:
			return fmt.Errorf("%w: unknown magic % x", ErrFormat, magic)
		}
		c.progress.Format = Pcap
		return c.copyPcap()
	}
}

func (c *Copier) cut(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// read reads exactly n bytes into the reusable buffer.
func (c *Copier) read(n int) ([]byte, error) {
	if n > MaxRecord {
		return nil, fmt.Errorf("%w: record of %d bytes, maximum %d", ErrFormat, n, MaxRecord)
	}
	if cap(c.buf) < n {
		c.buf = make([]byte, n, max(n, 64<<10))
	}
	b := c.buf[:n]
	if _, err := io.ReadFull(c.src, b); err != nil {
		return nil, c.cut(err)
	}
	return b, nil
}

// write writes one whole record.
func (c *Copier) write(rec []byte, packet bool) error {
	if _, err := c.dst.Write(rec); err != nil {
		return fmt.Errorf("write capture: %w", err)
	}
	c.progress.Bytes += int64(len(rec))
	if packet {
		c.progress.Packets++
	}
	if c.OnRecord != nil {
		c.OnRecord(c.progress)
	}
	return nil
}

// atEnd reports a clean end of stream between records.
func (c *Copier) atEnd() (bool, error) {
	_, err := c.src.Peek(1)
	if errors.Is(err, io.EOF) {
		return true, nil
	}
	return false, err
}

func (c *Copier) copyPcap() error {
	hdr, err := c.read(24)
	if err != nil {
		return err
	}
	if err := c.write(hdr, false); err != nil {
		return err
	}
	for {
		if end, err := c.atEnd(); end || err != nil {
			return err
		}
		// The record header and data are written together.
		head, err := c.src.Peek(16)
		if err != nil {
			return c.cut(err)
		}
		capLen := c.order.Uint32(head[8:])
		origLen := c.order.Uint32(head[12:])
		if capLen > origLen && origLen != 0 {
			return fmt.Errorf("%w: record captures %d bytes of a %d-byte packet", ErrFormat, capLen, origLen)
		}
		rec, err := c.read(16 + int(min(capLen, MaxRecord)))
		if err != nil {
			return err
		}
		if err := c.write(rec, true); err != nil {
			return err
		}
	}
}

// pcapng block types that carry a packet.
const (
	blockSHB = 0x0A0D0D0A
	blockEPB = 6
	blockSPB = 3
	blockPB  = 2
	blockISB = 5
)

func (c *Copier) copyPcapng() error {
	for {
		if end, err := c.atEnd(); end || err != nil {
			return err
		}
		head, err := c.src.Peek(12)
		if err != nil {
			return c.cut(err)
		}
		typ := binary.LittleEndian.Uint32(head)
		if typ == blockSHB {
			// A section header sets the byte order of everything after it.
			switch binary.LittleEndian.Uint32(head[8:]) {
			case 0x1A2B3C4D:
				c.order = binary.LittleEndian
			case 0x4D3C2B1A:
				c.order = binary.BigEndian
			default:
				return fmt.Errorf("%w: bad section byte-order magic", ErrFormat)
			}
		} else if c.order == nil {
			return fmt.Errorf("%w: pcapng block before the section header", ErrFormat)
		}
		typ = c.order.Uint32(head)
		n := c.order.Uint32(head[4:])
		if n < 12 || n%4 != 0 {
			return fmt.Errorf("%w: pcapng block of length %d", ErrFormat, n)
		}
		rec, err := c.read(int(min(n, MaxRecord+1)))
		if err != nil {
			return err
		}
		if c.order.Uint32(rec[n-4:]) != n {
			return fmt.Errorf("%w: pcapng block lengths disagree", ErrFormat)
		}
		if typ == blockISB {
			c.noteStats(rec)
		}
		if err := c.write(rec, typ == blockEPB || typ == blockSPB || typ == blockPB); err != nil {
			return err
		}
	}
}

// noteStats reads isb_ifdrop (option 5) from an interface statistics block.
func (c *Copier) noteStats(b []byte) {
	if len(b) < 24 {
		return
	}
	iface := c.order.Uint32(b[8:])
	opts := b[20 : len(b)-4]
	for len(opts) >= 4 {
		code, length := c.order.Uint16(opts), int(c.order.Uint16(opts[2:]))
		padded := (length + 3) &^ 3
		if code == 0 || 4+padded > len(opts) {
			break
		}
		if code == 5 && length == 8 {
			c.ifDrops[iface] = c.order.Uint64(opts[4:])
		}
		opts = opts[4+padded:]
	}
	var total uint64
	for _, d := range c.ifDrops {
		total += d
	}
	c.progress.Dropped = total
}
