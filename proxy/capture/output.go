package capture

import (
	"bufio"
	"fmt"
	"io"
	"time"

	"github.com/gopacket/gopacket"
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

// output writes a capture file. Every method leaves the stream ending on a
// whole record, so that whatever is cut after it, the file is valid.
type output interface {
	// size is what writing a packet of n captured bytes adds.
	size(n int) int64
	writePacket(iface int, p wire.Packet) error
	// writeStats closes an interface's record with its final counters
	// (pcapng only).
	writeStats(iface int, s ifaceStats) error
	flush() error
}

// ifaceStats are an instance's final counters.
type ifaceStats struct {
	delivered, dropped uint64
	start, end         time.Time
	comment            string
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

// pcapOutput is classic pcap with nanosecond timestamps: one link type
// and snaplen for the whole file, no room for per-instance counters.
type pcapOutput struct {
	buf *bufio.Writer
	w   *pcapgo.Writer
}

func newPcapOutput(w io.Writer, snaplen int, linkType layers.LinkType) (*pcapOutput, error) {
	buf := bufio.NewWriterSize(w, 64<<10)
	pw := pcapgo.NewWriterNanos(buf)
	if err := pw.WriteFileHeader(uint32(snaplen), linkType); err != nil {
		return nil, err
	}
	return &pcapOutput{buf: buf, w: pw}, nil
}

func (o *pcapOutput) size(n int) int64 { return 16 + int64(n) }

func (o *pcapOutput) writePacket(_ int, p wire.Packet) error {
	return o.w.WritePacket(captureInfo(p, 0), p.Data)
}

func (o *pcapOutput) writeStats(int, ifaceStats) error { return nil }

func (o *pcapOutput) flush() error { return o.buf.Flush() }

// pcapngOutput has one interface per instance, named APP/INDEX.
type pcapngOutput struct {
	w *pcapgo.NgWriter
}

// ngInterface describes one instance.
type ngInterface struct {
	name, description, filter string
	linkType                  layers.LinkType
	snaplen                   int
}

func newPcapngOutput(w io.Writer, ifaces []ngInterface) (*pcapngOutput, error) {
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
	ng, err := pcapgo.NewNgWriterInterface(w, toNg(ifaces[0]), pcapgo.NgWriterOptions{SectionInfo: pcapgo.NgSectionInfo{
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
	return &pcapngOutput{w: ng}, nil
}

// size of an Enhanced Packet Block without options: 28 bytes of header,
// the data padded to 4 bytes, 4 bytes of trailing length.
func (o *pcapngOutput) size(n int) int64 { return 32 + int64((n+3)&^3) }

func (o *pcapngOutput) writePacket(iface int, p wire.Packet) error {
	return o.w.WritePacket(captureInfo(p, iface), p.Data)
}

func (o *pcapngOutput) writeStats(iface int, s ifaceStats) error {
	return o.w.WriteInterfaceStats(iface, pcapgo.NgInterfaceStatistics{
		LastUpdate:      s.end,
		StartTime:       s.start,
		EndTime:         s.end,
		PacketsReceived: s.delivered + s.dropped,
		PacketsDropped:  s.dropped,
		Comment:         s.comment,
	})
}

func (o *pcapngOutput) flush() error { return o.w.Flush() }

// captureInfo addresses a packet to the pcapng interface of its instance:
// the writer reads InterfaceIndex as the interface's id in the file.
func captureInfo(p wire.Packet, iface int) gopacket.CaptureInfo {
	return gopacket.CaptureInfo{
		Timestamp:      time.Unix(0, p.Timestamp),
		CaptureLength:  len(p.Data),
		Length:         p.Length,
		InterfaceIndex: iface,
	}
}
