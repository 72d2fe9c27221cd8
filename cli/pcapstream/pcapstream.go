// Package pcapstream copies a pcap or pcapng byte stream so that the copy
// only ever ends on a whole record: whatever cuts the stream (Ctrl-C, a
// lost connection, a crashed server), the file written so far is valid.
// It also counts packets on the way, for progress.
//
// The copy is written in large pieces: every whole record received is
// written before the copier waits for more input, so a live reader (a
// Wireshark on `-o -`) sees each packet as soon as it arrived, while a
// fast stream is written in pieces as large as the reads that bring it.
package pcapstream

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"unicode"
)

// MaxRecord bounds one record (a pcap packet or a pcapng block); nothing
// legitimate comes close, and it bounds what a broken stream can make us
// allocate.
const MaxRecord = 16 << 20

// readSize is the input buffer; a record larger than it grows the buffer
// up to MaxRecord.
const readSize = 256 << 10

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
	src io.Reader
	dst io.Writer
	// StopAfter, if set, ends Copy (with a nil error) once that many
	// packets are written.
	StopAfter uint64

	// buf[:parsed] holds whole records not written yet, buf[parsed:filled]
	// the start of the next record.
	buf            []byte
	parsed, filled int
	pending        uint64 // packets among the records not written yet

	format Format
	order  binary.ByteOrder
	// ifDrops are, by interface id, the latest isb_ifdrop of each
	// interface described; dropTotal their sum.
	ifDrops   []uint64
	dropTotal uint64
	// ifNames are the if_name options of the interface description
	// blocks, by interface id.
	ifNames []string

	// Written by Copy, read by Progress from any goroutine.
	progFormat  atomic.Int32
	progPackets atomic.Uint64
	progBytes   atomic.Int64
	progDropped atomic.Uint64
}

// NewCopier copies from src to dst.
func NewCopier(dst io.Writer, src io.Reader) *Copier {
	return &Copier{src: src, dst: dst}
}

// Progress returns what has been copied. It is safe to call while Copy
// runs: progress lines read it.
func (c *Copier) Progress() Progress {
	return Progress{
		Format:  Format(c.progFormat.Load()),
		Packets: c.progPackets.Load(),
		Bytes:   c.progBytes.Load(),
		Dropped: c.progDropped.Load(),
	}
}

// Copy copies until src ends. A clean end is a nil error; a stream cut
// inside a record returns io.ErrUnexpectedEOF (or the read error) and the
// partial record is not written.
func (c *Copier) Copy() error {
	if c.buf == nil {
		c.buf = make([]byte, readSize)
	}
	var readErr error
	for {
		need, err := c.parse()
		if err != nil {
			// The records before the bad one are still good.
			return errors.Join(err, c.write())
		}
		// Everything whole goes out before the copier may wait.
		if err := c.write(); err != nil {
			return err
		}
		switch {
		case c.StopAfter > 0 && c.progPackets.Load() >= c.StopAfter:
			return nil
		case readErr == nil:
		case !errors.Is(readErr, io.EOF):
			return readErr
		case c.filled > 0:
			return io.ErrUnexpectedEOF
		case c.format == Unknown:
			return fmt.Errorf("%w: empty stream", ErrFormat)
		default:
			return nil
		}
		if need > len(c.buf) {
			grown := make([]byte, need)
			copy(grown, c.buf[:c.filled])
			c.buf = grown
		}
		var n int
		n, readErr = c.src.Read(c.buf[c.filled:])
		c.filled += n
	}
}

// write writes the whole records parsed so far and keeps the rest.
func (c *Copier) write() error {
	if c.parsed == 0 {
		return nil
	}
	if _, err := c.dst.Write(c.buf[:c.parsed]); err != nil {
		return fmt.Errorf("write capture: %w", err)
	}
	c.progBytes.Add(int64(c.parsed))
	c.progPackets.Add(c.pending)
	c.pending = 0
	c.filled = copy(c.buf, c.buf[c.parsed:c.filled])
	c.parsed = 0
	return nil
}

// parse advances over the whole records in the buffer. It returns how
// many bytes the buffer must hold for the next record to be whole.
func (c *Copier) parse() (need int, err error) {
	for {
		if c.StopAfter > 0 && c.progPackets.Load()+c.pending >= c.StopAfter {
			return 0, nil
		}
		rest := c.buf[c.parsed:c.filled]
		var n int
		var packet bool
		switch c.format {
		case Unknown:
			n, err = c.start(rest)
			if err == nil && c.format == Pcapng {
				// The section header is the first block: parse it now,
				// the stream may end with this read.
				continue
			}
		case Pcap:
			n, err = c.pcapRecord(rest)
			packet = true
		default:
			n, packet, err = c.pcapngBlock(rest)
		}
		if err != nil {
			return 0, err
		}
		if n == 0 || n > len(rest) {
			// Not whole yet: n is the record's size once known.
			return n, nil
		}
		c.parsed += n
		if packet {
			c.pending++
		}
	}
}

// start recognises the format by its magic; for pcap the file header is
// the first record.
func (c *Copier) start(b []byte) (int, error) {
	if len(b) < 4 {
		return 0, nil
	}
	switch binary.LittleEndian.Uint32(b) {
	case blockSHB:
		c.setFormat(Pcapng)
		return 0, nil
	case 0xA1B2C3D4, 0xA1B23C4D:
		c.order = binary.LittleEndian
	case 0xD4C3B2A1, 0x4D3CB2A1:
		c.order = binary.BigEndian
	default:
		return 0, fmt.Errorf("%w: unknown magic % x", ErrFormat, b[:4])
	}
	if len(b) >= 24 {
		c.setFormat(Pcap)
	}
	return 24, nil
}

func (c *Copier) setFormat(f Format) {
	c.format = f
	c.progFormat.Store(int32(f))
}

func (c *Copier) pcapRecord(b []byte) (int, error) {
	if len(b) < 16 {
		return 0, nil
	}
	capLen := c.order.Uint32(b[8:])
	origLen := c.order.Uint32(b[12:])
	switch {
	case capLen > origLen && origLen != 0:
		return 0, fmt.Errorf("%w: record captures %d bytes of a %d-byte packet", ErrFormat, capLen, origLen)
	case capLen > MaxRecord-16:
		return 0, fmt.Errorf("%w: record of %d bytes, maximum %d", ErrFormat, capLen, MaxRecord)
	}
	return 16 + int(capLen), nil
}

// pcapng block types.
const (
	blockSHB = 0x0A0D0D0A
	blockIDB = 1
	blockEPB = 6
	blockSPB = 3
	blockPB  = 2
	blockISB = 5
)

func (c *Copier) pcapngBlock(b []byte) (n int, packet bool, err error) {
	if len(b) < 12 {
		return 0, false, nil
	}
	if binary.LittleEndian.Uint32(b) == blockSHB {
		// A section header sets the byte order of everything after it.
		switch binary.LittleEndian.Uint32(b[8:]) {
		case 0x1A2B3C4D:
			c.order = binary.LittleEndian
		case 0x4D3C2B1A:
			c.order = binary.BigEndian
		default:
			return 0, false, fmt.Errorf("%w: bad section byte-order magic", ErrFormat)
		}
	} else if c.order == nil {
		return 0, false, fmt.Errorf("%w: pcapng block before the section header", ErrFormat)
	}
	typ := c.order.Uint32(b)
	length := c.order.Uint32(b[4:])
	switch {
	case length < 12 || length%4 != 0:
		return 0, false, fmt.Errorf("%w: pcapng block of length %d", ErrFormat, length)
	case length > MaxRecord:
		return 0, false, fmt.Errorf("%w: record of %d bytes, maximum %d", ErrFormat, length, MaxRecord)
	case int(length) > len(b):
		return int(length), false, nil
	}
	block := b[:length]
	if c.order.Uint32(block[length-4:]) != length {
		return 0, false, fmt.Errorf("%w: pcapng block lengths disagree", ErrFormat)
	}
	switch typ {
	case blockISB:
		c.noteStats(block)
	case blockIDB:
		c.noteInterface(block)
	}
	return int(length), typ == blockEPB || typ == blockSPB || typ == blockPB, nil
}

// The names kept for InterfaceDrops are bounded: the stream is the
// server's to choose.
const (
	maxNamedInterfaces = 1024
	maxInterfaceName   = 256
)

// noteInterface reads if_name (option 2) from an interface description
// block.
func (c *Copier) noteInterface(b []byte) {
	if len(c.ifNames) >= maxNamedInterfaces {
		return
	}
	name := ""
	if len(b) >= 20 {
		name = c.option(b[16:len(b)-4], 2)
	}
	if len(name) > maxInterfaceName {
		name = name[:maxInterfaceName]
	}
	// The name goes to a terminal: no control characters.
	name = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(name, "?"))
	c.ifNames = append(c.ifNames, name)
	c.ifDrops = append(c.ifDrops, 0)
}

// option returns the value of the first option with code in opts, a
// block's options.
func (c *Copier) option(opts []byte, code uint16) string {
	for len(opts) >= 4 {
		oc, length := c.order.Uint16(opts), int(c.order.Uint16(opts[2:]))
		padded := (length + 3) &^ 3
		if oc == 0 || 4+padded > len(opts) {
			break
		}
		if oc == code {
			return string(opts[4 : 4+length])
		}
		opts = opts[4+padded:]
	}
	return ""
}

// InterfaceDrops are the packets an interface dropped, as its latest
// statistics block says.
type InterfaceDrops struct {
	ID      uint32
	Name    string // if_name; empty if it had none
	Dropped uint64
}

// InterfaceDrops lists the interfaces that reported drops, by id. Call it
// once Copy has returned.
func (c *Copier) InterfaceDrops() []InterfaceDrops {
	var out []InterfaceDrops
	for id, d := range c.ifDrops {
		if d > 0 {
			out = append(out, InterfaceDrops{ID: uint32(id), Name: c.ifNames[id], Dropped: d})
		}
	}
	return out
}

// noteStats reads isb_ifdrop (option 5) from an interface statistics
// block of an interface described before; the total stays a running sum.
func (c *Copier) noteStats(b []byte) {
	if len(b) < 24 {
		return
	}
	iface := c.order.Uint32(b[8:])
	if int64(iface) >= int64(len(c.ifDrops)) {
		return
	}
	opts := b[20 : len(b)-4]
	for len(opts) >= 4 {
		code, length := c.order.Uint16(opts), int(c.order.Uint16(opts[2:]))
		padded := (length + 3) &^ 3
		if code == 0 || 4+padded > len(opts) {
			break
		}
		if code == 5 && length == 8 {
			d := c.order.Uint64(opts[4:])
			c.dropTotal += d - c.ifDrops[iface]
			c.ifDrops[iface] = d
		}
		opts = opts[4+padded:]
	}
	c.progDropped.Store(c.dropTotal)
}
