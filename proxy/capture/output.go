package capture

import (
	"encoding/binary"
	"fmt"
	"io"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/cloudfoundry/pcap-server-release/internal/buildinfo"
	"github.com/cloudfoundry/pcap-server-release/wire"
)

// Format is the file format of a capture.
type Format string

const (
	FormatPcap   Format = "pcap"
	FormatPcapng Format = "pcapng"
)

// ContentType is the media type of the format.
func (f Format) ContentType() string {
	if f == FormatPcapng {
		return "application/x-pcapng"
	}
	return "application/vnd.tcpdump.pcap"
}

// ParseFormat accepts pcap and pcapng; empty means pcap.
func ParseFormat(s string) (Format, error) {
	switch Format(s) {
	case "", FormatPcap:
		return FormatPcap, nil
	case FormatPcapng:
		return FormatPcapng, nil
	}
	return "", fmt.Errorf("format %q: want pcap or pcapng", s)
}

// output encodes a capture file into a buffer that the writing loop sends
// to the client in large writes. Everything it appends is whole records,
// so whatever cuts the stream after a write, the file is valid.
//
// Packet records, the per-packet work, are encoded here directly from the
// agents' records, and so are interface statistics, whose comment
// gopacket's writer drops; gopacket's pcapgo writes the rest (file and
// section headers, interface descriptions), where its checks are worth
// more than its cost.
type output struct {
	format Format
	buf    appendBuffer
	ifaces int // pcapng: the interfaces described
}

// appendBuffer is a byte slice that pcapgo's writers can write to.
type appendBuffer []byte

func (b *appendBuffer) Write(p []byte) (int, error) {
	*b = append(*b, p...)
	return len(p), nil
}

// ngInterface describes one source: an instance, or one of its devices.
type ngInterface struct {
	name, description, filter string
	linkType                  layers.LinkType
	snaplen                   int
}

// ifaceStats are a source's counters so far.
type ifaceStats struct {
	delivered, dropped uint64
	start, end         time.Time
	comment            string
}

// newPcapOutput starts classic pcap with nanosecond timestamps: one link
// type and snaplen for the whole file, no room for per-instance counters.
func newPcapOutput(snaplen int, linkType layers.LinkType) (*output, error) {
	o := &output{format: FormatPcap}
	if err := pcapgo.NewWriterNanos(&o.buf).WriteFileHeader(uint32(snaplen), linkType); err != nil {
		return nil, err
	}
	return o, nil
}

// newPcapngOutput starts pcapng with one interface per source.
func newPcapngOutput(ifaces []ngInterface) (*output, error) {
	o := &output{format: FormatPcapng}
	toNg := func(i ngInterface) pcapgo.NgInterface {
		return pcapgo.NgInterface{
			Name:                i.name,
			Description:         i.description,
			Filter:              i.filter,
			OS:                  "Linux",
			LinkType:            i.linkType,
			SnapLength:          uint32(i.snaplen),
			TimestampResolution: 9,
		}
	}
	ng, err := pcapgo.NewNgWriterInterface(&o.buf, toNg(ifaces[0]), pcapgo.NgWriterOptions{SectionInfo: pcapgo.NgSectionInfo{
		Application: "pcap-server-api " + buildinfo.Version(),
		OS:          "Linux",
	}})
	if err != nil {
		return nil, err
	}
	for i, iface := range ifaces[1:] {
		id, err := ng.AddInterface(toNg(iface))
		if err != nil {
			return nil, err
		}
		if id != i+1 {
			return nil, fmt.Errorf("pcapng interface %s got id %d, want %d", iface.name, id, i+1)
		}
	}
	o.ifaces = len(ifaces)
	return o, ng.Flush()
}

// size is what writing a packet of n captured bytes adds to the file.
func (o *output) size(n int) int64 {
	if o.format == FormatPcapng {
		// An Enhanced Packet Block without options: 28 bytes of header,
		// the data padded to 4 bytes, 4 bytes of trailing length.
		return 32 + int64((n+3)&^3)
	}
	return 16 + int64(n)
}

// appendPacket encodes one record as a pcapng Enhanced Packet Block; iface
// is the pcapng interface of its source. Classic pcap records need no
// encoding: writeRun rewrites their headers in the frame.
func (o *output) appendPacket(iface int, rec wire.Record, data []byte) {
	le := binary.LittleEndian
	n := uint32(o.size(rec.CapLen))
	b := le.AppendUint32([]byte(o.buf), 6) // Enhanced Packet Block
	b = le.AppendUint32(b, n)
	b = le.AppendUint32(b, uint32(iface))
	// The interfaces' resolution is nanoseconds.
	b = le.AppendUint32(b, uint32(uint64(rec.Timestamp)>>32))
	b = le.AppendUint32(b, uint32(rec.Timestamp))
	b = le.AppendUint32(b, uint32(rec.CapLen))
	b = le.AppendUint32(b, uint32(rec.Length))
	b = append(b, data...)
	b = append(b, make([]byte, (4-rec.CapLen%4)%4)...)
	o.buf = le.AppendUint32(b, n)
}

// pcapRecordHeaderSize is a classic pcap record's header, as long as a
// wire record's: a frame's records become the file's by rewriting their
// headers where they are.
const pcapRecordHeaderSize = wire.RecordHeaderSize

// putPcapRecordHeader writes rec's pcap record header (nanosecond
// timestamps) into b, which may be rec's own wire header.
func putPcapRecordHeader(b []byte, rec wire.Record) {
	le := binary.LittleEndian
	le.PutUint32(b[0:], uint32(rec.Timestamp/1e9))
	le.PutUint32(b[4:], uint32(rec.Timestamp%1e9))
	le.PutUint32(b[8:], uint32(rec.CapLen))
	le.PutUint32(b[12:], uint32(rec.Length))
}

// appendRecords appends records already in the file's format.
func (o *output) appendRecords(b []byte) { o.buf = append(o.buf, b...) }

// isbSize is what appendStats writes: an Interface Statistics Block with
// its timestamp and four options (start, end, received, dropped) and the
// end of options.
const isbSize = 24 + 4*12 + 4

// maxComment bounds an ISB's comment; maxCommentCost is what one adds to
// the block at most (its option header and padding).
const (
	maxComment     = 252
	maxCommentCost = 4 + maxComment
)

// appendStats records a source's counters so far (pcapng only), as an
// Interface Statistics Block encoded here: gopacket's writer leaves the
// comment out.
func (o *output) appendStats(iface int, s ifaceStats) error {
	if o.format != FormatPcapng {
		return nil
	}
	if iface < 0 || iface >= o.ifaces {
		return fmt.Errorf("statistics for interface %d of %d", iface, o.ifaces)
	}
	le := binary.LittleEndian
	comment := []byte(s.comment)
	padded := (len(comment) + 3) &^ 3
	n := uint32(isbSize)
	if len(comment) > 0 {
		n += uint32(4 + padded)
	}
	// The interfaces' resolution is nanoseconds.
	ns := func(b []byte, t time.Time) []byte {
		v := uint64(t.UnixNano())
		return le.AppendUint32(le.AppendUint32(b, uint32(v>>32)), uint32(v))
	}
	b := []byte(o.buf)
	b = le.AppendUint32(b, 5) // Interface Statistics Block
	b = le.AppendUint32(b, n)
	b = le.AppendUint32(b, uint32(iface))
	b = ns(b, s.end)
	if len(comment) > 0 {
		b = le.AppendUint16(le.AppendUint16(b, 1), uint16(len(comment))) // opt_comment
		b = append(b, comment...)
		b = append(b, make([]byte, padded-len(comment))...)
	}
	b = ns(le.AppendUint16(le.AppendUint16(b, 2), 8), s.start)                            // isb_starttime
	b = ns(le.AppendUint16(le.AppendUint16(b, 3), 8), s.end)                              // isb_endtime
	b = le.AppendUint64(le.AppendUint16(le.AppendUint16(b, 4), 8), s.delivered+s.dropped) // isb_ifrecv
	b = le.AppendUint64(le.AppendUint16(le.AppendUint16(b, 5), 8), s.dropped)             // isb_ifdrop
	b = le.AppendUint32(b, 0)                                                             // opt_endofopt
	o.buf = le.AppendUint32(b, n)
	return nil
}

// pending is what is encoded and not yet written.
func (o *output) pending() int { return len(o.buf) }

// writeTo sends what is encoded.
func (o *output) writeTo(w io.Writer) error {
	if len(o.buf) == 0 {
		return nil
	}
	_, err := w.Write(o.buf)
	o.buf = o.buf[:0]
	return err
}

// countingWriter counts what reaches the client.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
