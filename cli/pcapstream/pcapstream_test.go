package pcapstream

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

func pcapStream(t testing.TB, n int) []byte {
	var b bytes.Buffer
	w := pcapgo.NewWriterNanos(&b)
	if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		data := bytes.Repeat([]byte{byte(i)}, 60+i)
		ci := gopacket.CaptureInfo{Timestamp: time.Unix(1700000000, int64(i)), CaptureLength: len(data), Length: len(data) + 10}
		if err := w.WritePacket(ci, data); err != nil {
			t.Fatal(err)
		}
	}
	return b.Bytes()
}

func pcapngStream(t testing.TB, n int) []byte {
	var b bytes.Buffer
	w, err := pcapgo.NewNgWriterInterface(&b, pcapgo.NgInterface{Name: "app/0", LinkType: layers.LinkTypeEthernet, SnapLength: 65535}, pcapgo.NgWriterOptions{SectionInfo: pcapgo.NgSectionInfo{Application: "pcapstream test"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.AddInterface(pcapgo.NgInterface{Name: "app/1", LinkType: layers.LinkTypeEthernet, SnapLength: 65535}); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		data := bytes.Repeat([]byte{byte(i)}, 61+i)
		ci := gopacket.CaptureInfo{Timestamp: time.Unix(1700000000, int64(i)), CaptureLength: len(data), Length: len(data), InterfaceIndex: i % 2}
		if err := w.WritePacket(ci, data); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.WriteInterfaceStats(1, pcapgo.NgInterfaceStatistics{PacketsReceived: 10, PacketsDropped: 7}); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestCopyWholeStreams(t *testing.T) {
	for name, c := range map[string]struct {
		stream  []byte
		format  Format
		dropped uint64
	}{
		"pcap":   {pcapStream(t, 5), Pcap, 0},
		"pcapng": {pcapngStream(t, 5), Pcapng, 7},
	} {
		// The last read may bring io.EOF with the whole stream.
		for _, src := range []io.Reader{bytes.NewReader(c.stream), iotest.DataErrReader(bytes.NewReader(c.stream))} {
			var out bytes.Buffer
			cp := NewCopier(&out, src)
			if err := cp.Copy(); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			p := cp.Progress()
			if !bytes.Equal(out.Bytes(), c.stream) || p.Packets != 5 || p.Format != c.format || p.Bytes != int64(len(c.stream)) || p.Dropped != c.dropped {
				t.Fatalf("%s: progress %+v, copied %d of %d bytes", name, p, out.Len(), len(c.stream))
			}
		}
	}
}

// The drops of each interface are told by its name, from the interface
// descriptions.
func TestInterfaceDrops(t *testing.T) {
	cp := NewCopier(io.Discard, bytes.NewReader(pcapngStream(t, 5)))
	if err := cp.Copy(); err != nil {
		t.Fatal(err)
	}
	if got := cp.InterfaceDrops(); len(got) != 1 || got[0] != (InterfaceDrops{ID: 1, Name: "app/1", Dropped: 7}) {
		t.Fatalf("interface drops %+v", got)
	}
}

// Cutting a stream at every byte leaves a copy that ends on a record
// boundary: a prefix of the stream that tshark reads without complaint.
func TestCutStreamsLeaveWholeRecords(t *testing.T) {
	for name, stream := range map[string][]byte{"pcap": pcapStream(t, 4), "pcapng": pcapngStream(t, 4)} {
		var boundaries []int
		for cut := 0; cut <= len(stream); cut++ {
			var out bytes.Buffer
			err := NewCopier(&out, bytes.NewReader(stream[:cut])).Copy()
			if !bytes.Equal(out.Bytes(), stream[:out.Len()]) {
				t.Fatalf("%s cut at %d: copy is not a prefix", name, cut)
			}
			if cut == len(stream) {
				if err != nil {
					t.Fatalf("%s whole: %v", name, err)
				}
			} else if cut > 0 && !errors.Is(err, io.ErrUnexpectedEOF) && out.Len() != cut {
				t.Fatalf("%s cut at %d: err %v", name, cut, err)
			}
			if len(boundaries) == 0 || boundaries[len(boundaries)-1] != out.Len() {
				boundaries = append(boundaries, out.Len())
			}
		}
		if _, err := exec.LookPath("tshark"); err != nil {
			t.Log("tshark not installed: the prefixes are not checked with it")
			continue
		}
		dir := t.TempDir()
		for _, n := range boundaries[1:] {
			path := filepath.Join(dir, "cut")
			if err := os.WriteFile(path, stream[:n], 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command("tshark", "-r", path).CombinedOutput()
			if err != nil || strings.Contains(string(out), "appears to have been cut short") {
				t.Fatalf("%s prefix of %d bytes: tshark: %v\n%s", name, n, err, out)
			}
		}
	}
}

func TestRejectsGarbage(t *testing.T) {
	for name, in := range map[string][]byte{
		"empty":         {},
		"not a capture": []byte("<html>502 Bad Gateway</html>"),
		"huge record":   append(pcapStream(t, 0), 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff, 0x7f),
	} {
		var out bytes.Buffer
		err := NewCopier(&out, bytes.NewReader(in)).Copy()
		if !errors.Is(err, ErrFormat) {
			t.Errorf("%s: err %v", name, err)
		}
	}
}

// writeCounter counts the writes that reach it.
type writeCounter struct {
	bytes.Buffer
	writes int
}

func (w *writeCounter) Write(p []byte) (int, error) {
	w.writes++
	return w.Buffer.Write(p)
}

// A stream that arrives in large reads is written in large pieces, not a
// write per record.
func TestWritesInLargePieces(t *testing.T) {
	stream := pcapStream(t, 2000)
	var out writeCounter
	cp := NewCopier(&out, bytes.NewReader(stream))
	if err := cp.Copy(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), stream) || cp.Progress().Packets != 2000 {
		t.Fatalf("copied %d of %d bytes, %d packets", out.Len(), len(stream), cp.Progress().Packets)
	}
	if max := len(stream)/readSize + 2; out.writes > max {
		t.Fatalf("%d writes for %d bytes, want at most %d", out.writes, len(stream), max)
	}
}

// Every whole record that arrived is written before the copier waits for
// more: a live reader sees each packet without delay.
func TestWritesEachRecordBeforeWaiting(t *testing.T) {
	stream := pcapStream(t, 3)
	r, w := io.Pipe()
	out := &lockedBuffer{}
	cp := NewCopier(out, r)
	done := make(chan error, 1)
	go func() { done <- cp.Copy() }()
	// The header and the first record, then half of the second: the copy
	// must hold exactly the whole ones while it waits for the rest.
	firstEnd := 24 + 16 + 60
	for _, piece := range [][]byte{stream[:firstEnd], stream[firstEnd : firstEnd+20]} {
		if _, err := w.Write(piece); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for out.Len() < firstEnd {
		if time.Now().After(deadline) {
			t.Fatalf("after 10s the copy holds %d bytes, want %d", out.Len(), firstEnd)
		}
		time.Sleep(time.Millisecond) // polling the output: nothing to await
	}
	if got := out.Bytes(); !bytes.Equal(got, stream[:firstEnd]) {
		t.Fatalf("copy holds %d bytes, want the first %d", len(got), firstEnd)
	}
	if _, err := w.Write(stream[firstEnd+20:]); err != nil {
		t.Fatal(err)
	}
	w.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), stream) {
		t.Fatal("the whole stream was not copied")
	}
}

func TestStopAfter(t *testing.T) {
	stream := pcapngStream(t, 10)
	var out bytes.Buffer
	cp := NewCopier(&out, bytes.NewReader(stream))
	cp.StopAfter = 4
	if err := cp.Copy(); err != nil {
		t.Fatal(err)
	}
	if p := cp.Progress(); p.Packets != 4 || !bytes.HasPrefix(stream, out.Bytes()) {
		t.Fatalf("progress %+v", p)
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Len()
}

func (l *lockedBuffer) Bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Clone(l.b.Bytes())
}

// chunkReader hands out its data in reads of at most size bytes, as a
// TLS connection does.
type chunkReader struct {
	data []byte
	size int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), c.size)], c.data)
	c.data = c.data[n:]
	return n, nil
}

// benchStream is a pcap stream of n packets, packet i of size(i) bytes.
func benchStream(b *testing.B, n int, size func(int) int) *bytes.Buffer {
	var stream bytes.Buffer
	w := pcapgo.NewWriterNanos(&stream)
	if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		b.Fatal(err)
	}
	for i := range n {
		data := make([]byte, size(i))
		ci := gopacket.CaptureInfo{Timestamp: time.Unix(1700000000, int64(i)), CaptureLength: len(data), Length: len(data)}
		if err := w.WritePacket(ci, data); err != nil {
			b.Fatal(err)
		}
	}
	return &stream
}

// BenchmarkCopy copies a stream of 60-byte packets arriving in 16 KiB
// reads; the baseline is io.Copy of the same bytes, which knows nothing of
// records.
func BenchmarkCopy(b *testing.B) {
	const packets = 100000
	stream := benchStream(b, packets, func(int) int { return 60 })
	b.Run("copier", func(b *testing.B) {
		for b.Loop() {
			if err := NewCopier(io.Discard, &chunkReader{stream.Bytes(), 16 << 10}).Copy(); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*packets), "ns/packet")
	})
	b.Run("io.Copy", func(b *testing.B) {
		for b.Loop() {
			if _, err := io.Copy(io.Discard, &chunkReader{stream.Bytes(), 16 << 10}); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*packets), "ns/packet")
	})
}

// BenchmarkCopyBulk copies bulk TCP at full snaplen: records of about
// 50 KB (what GRO hands a capture on loopback and veths) arriving in
// 256 KiB reads, the API's chunks, into a writer that discards; the
// baseline is io.Copy with a buffer of the copier's size.
func BenchmarkCopyBulk(b *testing.B) {
	stream := benchStream(b, 2000, func(i int) int { return 40000 + i*13%25000 })
	b.Run("copier", func(b *testing.B) {
		b.SetBytes(int64(stream.Len()))
		for b.Loop() {
			if err := NewCopier(io.Discard, &chunkReader{stream.Bytes(), 256 << 10}).Copy(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("io.Copy", func(b *testing.B) {
		b.SetBytes(int64(stream.Len()))
		buf := make([]byte, readSize)
		for b.Loop() {
			if _, err := io.CopyBuffer(struct{ io.Writer }{io.Discard}, &chunkReader{stream.Bytes(), 256 << 10}, buf); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// Statistics of an interface the stream never described count nothing,
// and interface names reach the terminal without control characters.
func TestInterfaceStatisticsAreBounded(t *testing.T) {
	var b bytes.Buffer
	w, err := pcapgo.NewNgWriterInterface(&b, pcapgo.NgInterface{Name: "app/0/\x1b[2Jlo", LinkType: layers.LinkTypeEthernet, SnapLength: 65535}, pcapgo.NgWriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteInterfaceStats(0, pcapgo.NgInterfaceStatistics{PacketsDropped: 3}); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	// A statistics block for interface 7, which was never described.
	isb := bytes.Clone(b.Bytes()[len(b.Bytes())-isbLen(b.Bytes()):])
	isb[8] = 7
	stream := append(bytes.Clone(b.Bytes()), isb...)
	c := NewCopier(&bytes.Buffer{}, bytes.NewReader(stream))
	if err := c.Copy(); err != nil {
		t.Fatal(err)
	}
	drops := c.InterfaceDrops()
	if c.Progress().Dropped != 3 || len(drops) != 1 || drops[0].Name != "app/0/ [2Jlo" {
		t.Fatalf("dropped %d, interfaces %+v", c.Progress().Dropped, drops)
	}
}

// isbLen is the length of the last block of a little-endian pcapng stream.
func isbLen(stream []byte) int {
	n := len(stream)
	return int(uint32(stream[n-4]) | uint32(stream[n-3])<<8 | uint32(stream[n-2])<<16 | uint32(stream[n-1])<<24)
}
