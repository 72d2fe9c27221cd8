package pcapstream

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
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
		var out bytes.Buffer
		cp := NewCopier(&out, bytes.NewReader(c.stream))
		if err := cp.Copy(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		p := cp.Progress()
		if !bytes.Equal(out.Bytes(), c.stream) || p.Packets != 5 || p.Format != c.format || p.Bytes != int64(len(c.stream)) || p.Dropped != c.dropped {
			t.Fatalf("%s: progress %+v, copied %d of %d bytes", name, p, out.Len(), len(c.stream))
		}
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
