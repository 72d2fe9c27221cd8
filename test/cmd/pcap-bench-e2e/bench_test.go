package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"golang.org/x/sys/unix"
)

func TestParseRates(t *testing.T) {
	got, err := parseRates("100k, 1.5M,5000,max")
	if err != nil {
		t.Fatal(err)
	}
	want := []rate{{"100k", 100000}, {"1.5M", 1500000}, {"5000", 5000}, {"max", 0}}
	if len(got) != len(want) {
		t.Fatalf("%v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("rate %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	for _, bad := range []string{"", "fast", "0", "-5k", "10kpps"} {
		if _, err := parseRates(bad); err == nil || !strings.Contains(err.Error(), "max") {
			t.Errorf("parseRates(%q): %v", bad, err)
		}
	}
}

func TestPercentileIsNearestRank(t *testing.T) {
	var samples []time.Duration
	for i := 1; i <= 100; i++ {
		samples = append(samples, time.Duration(i)*time.Millisecond)
	}
	for p, want := range map[float64]time.Duration{50: 50 * time.Millisecond, 99: 99 * time.Millisecond, 100: 100 * time.Millisecond, 1: time.Millisecond} {
		if got := percentile(samples, p); got != want {
			t.Errorf("p%v = %v, want %v", p, got, want)
		}
	}
	if got := percentile(samples[:1], 99); got != time.Millisecond {
		t.Errorf("p99 of one sample = %v", got)
	}
}

// pcapBytes writes n 60-byte packets with nanosecond timestamps.
func pcapBytes(t *testing.T, n int, ts time.Time) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := pcapgo.NewWriterNanos(&buf)
	if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	frame, err := udpFrame(net.HardwareAddr{2, 0, 0, 0, 0, 1}, net.HardwareAddr{2, 0, 0, 0, 0, 2})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		ci := gopacket.CaptureInfo{Timestamp: ts.Add(time.Duration(i) * time.Millisecond), CaptureLength: len(frame), Length: len(frame)}
		if err := w.WritePacket(ci, frame); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

func TestCountPcap(t *testing.T) {
	data := pcapBytes(t, 1000, time.Now())
	c, err := countPcap(bytes.NewReader(data))
	if err != nil || c.packets != 1000 || c.bytes != 60000 {
		t.Fatalf("count = %+v, %v; want 1000 packets of 60 bytes", c, err)
	}
	// A capture killed mid-record: the whole records count.
	c, err = countPcap(bytes.NewReader(data[:len(data)-30]))
	if err != nil || c.packets != 999 {
		t.Fatalf("cut count = %+v, %v; want 999", c, err)
	}
	if c, err := countPcap(bytes.NewReader(nil)); err != nil || c.packets != 0 {
		t.Fatalf("empty = %+v, %v", c, err)
	}
	if _, err := countPcap(strings.NewReader("not a pcap file at all, no")); err == nil {
		t.Fatal("no error for a file that is not pcap")
	}
}

func TestUDPFrameIsTheSixtyByteFrameOfTrafgen(t *testing.T) {
	frame, err := udpFrame(net.HardwareAddr{2, 0, 0, 0, 0, 1}, net.HardwareAddr{2, 0, 0, 0, 0, 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(frame) != 60 {
		t.Fatalf("%d bytes", len(frame))
	}
	p := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
	ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	udp, _ := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
	if ip == nil || udp == nil || ip.SrcIP.String() != peerIP || ip.DstIP.String() != appIP || udp.DstPort != 9 || len(udp.Payload) != 18 {
		t.Fatalf("frame %v", p)
	}
	if p.ErrorLayer() != nil {
		t.Fatalf("decode: %v", p.ErrorLayer().Error())
	}
}

func TestReadArrivalsTimesEachRecord(t *testing.T) {
	ts := time.Now().Add(-time.Second)
	a, err := readArrivals(bytes.NewReader(pcapBytes(t, 5, ts)))
	if err != nil || len(a.latencies) != 5 || a.first.IsZero() {
		t.Fatalf("%+v, %v", a, err)
	}
	// Packet i was captured at ts+i ms and read just now: about a second.
	for i, l := range a.latencies {
		if l < time.Second-10*time.Millisecond || l > time.Minute {
			t.Errorf("latency %d = %v", i, l)
		}
	}
}

func TestPaceNeverSendsAheadOfTheRate(t *testing.T) {
	const pps = 20000
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	calls := 0
	sent, failed, err := pace(ctx, pps, func() error {
		calls++
		if calls%10 == 0 {
			return unix.ENOBUFS
		}
		return nil
	})
	elapsed := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	if sent+failed != uint64(calls) || failed != uint64(calls/10) {
		t.Fatalf("sent %d failed %d of %d calls", sent, failed, calls)
	}
	if max := elapsed.Seconds()*pps + 1; float64(calls) > max || calls == 0 {
		t.Fatalf("%d sends in %v at %d pps (at most %.0f)", calls, elapsed, pps, max)
	}

	boom := errors.New("device gone")
	if _, _, err := pace(context.Background(), pps, func() error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("err = %v, want the send error", err)
	}
}

func TestCLISummaryParsing(t *testing.T) {
	// The line pcap-server-cli prints at the end (cli/pcapcmd/summary.go).
	l := newLines(nil)
	l.add(line{text: "Capturing app bench-app, instance(s) 0, into x.pcap (capture 1). Press Ctrl-C to stop."})
	l.add(line{text: "812345 packets, 46.5 MiB written to x.pcap in 12s; dropped: 17 (kernel=0 agent=12 api=5); ended: duration reached"})
	m := l.find(cliSummary)
	if m == nil || m[1] != "812345" || m[3] != "duration reached" {
		t.Fatalf("summary %q", m)
	}
	d := cliDropped.FindStringSubmatch(m[2])
	if d == nil || d[1] != "17" || d[2] != "kernel=0 agent=12 api=5" {
		t.Fatalf("drops %q", d)
	}
	if d := cliDropped.FindStringSubmatch("?"); d != nil {
		t.Fatalf("unknown drops parsed as %q", d)
	}
}

func TestWaitForSeesLinesBeforeAndAfterTheCall(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	l := newLines(nil)
	go l.read(r)
	if _, err := w.WriteString("tcpdump: listening on eth0\n"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if got, err := l.waitFor(ctx, regexp.MustCompile(`listening on`)); err != nil || got.text != "tcpdump: listening on eth0" {
		t.Fatalf("%q, %v", got.text, err)
	}
	go func() {
		_, _ = w.WriteString("12 packets dropped by kernel\n")
		w.Close()
	}()
	if got, err := l.waitFor(ctx, tcpdumpDropped); err != nil || got.text != "12 packets dropped by kernel" {
		t.Fatalf("%q, %v", got.text, err)
	}
	if _, err := l.waitFor(ctx, regexp.MustCompile(`never`)); err == nil || !strings.Contains(err.Error(), "ended") {
		t.Fatalf("waitFor after the end: %v", err)
	}
}

func TestParseTCPRates(t *testing.T) {
	got, err := parseTCPRates("1G, 2.5G,500M,max")
	if err != nil {
		t.Fatal(err)
	}
	want := []tcpRate{{"1G", "1G"}, {"2.5G", "2.5G"}, {"500M", "500M"}, {"max", ""}}
	if len(got) != len(want) {
		t.Fatalf("%v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("rate %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if got, err := parseTCPRates("none"); err != nil || len(got) != 0 {
		t.Errorf("none = %v, %v", got, err)
	}
	for _, bad := range []string{"", "fast", "0G", "-1G", "1GG", "1Gbit"} {
		if _, err := parseTCPRates(bad); err == nil || !strings.Contains(err.Error(), "max") {
			t.Errorf("parseTCPRates(%q): %v", bad, err)
		}
	}
}

func TestTCPReportComparesEachProcessPerByteWithTcpdump(t *testing.T) {
	td := tcpRun{path: "tcpdump", count: pcapCount{bytes: 1e9}, cap: captured{cpu: []processCPU{{"tcpdump", 1.5}}}}
	wp := tcpRun{path: "whole path", count: pcapCount{bytes: 5e8}, cap: captured{dropped: 3, drops: "kernel=0 agent=3 api=0",
		cpu: []processCPU{{"agent", 1}, {"API", 0.5}, {"CLI", 0.25}}}}
	paced := tcpStep{rate: tcpRate{"1G", "1G"}, runs: []tcpRun{td, wp}}
	unpaced := tcpStep{rate: tcpRate{"max", ""}, runs: []tcpRun{{path: "no capture"}, td, wp}}
	var out bytes.Buffer
	report{cfg: config{tcp: 8 * time.Second}, tcp: []tcpStep{paced, unpaced}}.printTCP(&out)
	text := out.String()
	for _, want := range []string{
		// 1.5 s over 1e9 bytes is 1.5 ns/byte; the agent's 1 s over 5e8 is 2 ns, 1.33×.
		"| max       | 1.50    | 2.00 (1.33×) | 1.00 (0.67×) | 0.50 (0.33×) | 3.50 (2.33×) |",
		"- Budget, agent CPU per captured byte at most 1.5× tcpdump's (unpaced): 1.33×: met.",
		"- Budget, CLI CPU per captured byte at most 0.5× tcpdump's (unpaced): 0.33×: met.",
		"- Budget, whole path CPU per captured byte at most 3.0× tcpdump's (unpaced): 2.33×: met.",
		"-b 1G 0.500",
		"rates where only the whole path reported drops: 1G: not met.",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("report lacks %q:\n%s", want, text)
		}
	}
}

// TestFollowCountsAGrowingFileAndFreesIt writes a pcap file piece by
// piece while the follower counts it: every packet is counted, the count
// ends only once the writer is done, and what was read no longer takes
// space.
func TestFollowCountsAGrowingFileAndFreesIt(t *testing.T) {
	data := pcapBytes(t, 20000, time.Now()) // 24 + 20000*76 bytes, about 1.5 MB
	path := t.TempDir() + "/tcp.pcap"
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	written := make(chan struct{})
	ff, err := openFollow(path, written, false)
	if err != nil {
		t.Fatal(err)
	}
	defer ff.f.Close()
	ff.punchEvery = 64 << 10
	type result struct {
		c   pcapCount
		err error
	}
	res := make(chan result, 1)
	go func() {
		c, err := countPcap(ff)
		res <- result{c, err}
	}()
	// Pieces that cut records anywhere, the last record last of all.
	for off := 0; off < len(data); off += 4093 {
		if _, err := f.Write(data[off:min(off+4093, len(data))]); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case r := <-res:
		t.Fatalf("the count ended before the writer did: %+v, %v", r.c, r.err)
	default:
	}
	close(written)
	r := <-res
	if r.err != nil || r.c.packets != 20000 || r.c.bytes != 20000*60 {
		t.Fatalf("counted %+v, %v; want 20000 packets of 60 bytes", r.c, r.err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	if st.Size != int64(len(data)) || st.Blocks*512 > int64(len(data))/2 {
		t.Errorf("file of %d bytes keeps %d bytes allocated after the count: want most of it freed", st.Size, st.Blocks*512)
	}
}

func TestFollowWaitsForTheFileAndGivesUpWhenTheWriterEndsWithoutOne(t *testing.T) {
	written := make(chan struct{})
	close(written)
	_, err := openFollow(t.TempDir()+"/never.pcap", written, false)
	if err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("open without a file: %v", err)
	}
}
