package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cloudfoundry/pcap-server-release/cli/pcapstream"
	"github.com/cloudfoundry/pcap-server-release/test/netnstest"
)

// BenchmarkCaptureVsTcpdump sends the same burst of UDP datagrams into an
// app namespace twice: once captured by tcpdump -w (the baseline), once by
// the agent binary through the tunnel and the API to a client. It reports
// the share of the burst each captured and the agent's CPU time relative
// to tcpdump's, so that the figures hold on a noisy machine.
//
//	go test -run '^$' -bench CaptureVsTcpdump -benchtime 3x ./e2e
func BenchmarkCaptureVsTcpdump(b *testing.B) {
	netnstest.RequireRoot(b)
	if _, err := exec.LookPath("tcpdump"); err != nil {
		b.Fatal("tcpdump is not installed (make test installs it)")
	}
	const burst = 200000
	var tdCaptured, ourCaptured, tdCPU, ourCPU float64
	for b.Loop() {
		a := newBenchApp(b)
		c, cpu := tcpdumpBurst(b, a, burst)
		tdCaptured += float64(c)
		tdCPU += cpu
		c, cpu = agentBurst(b, a, burst)
		ourCaptured += float64(c)
		ourCPU += cpu
	}
	n := float64(b.N)
	b.ReportMetric(tdCaptured/n/burst, "tcpdump-captured-share")
	b.ReportMetric(ourCaptured/n/burst, "agent-captured-share")
	b.ReportMetric(ourCPU/tdCPU, "agent-cpu/tcpdump-cpu")
	b.ReportMetric(ourCPU/n/(ourCaptured/n)*1e9, "agent-cpu-ns/packet")
	b.ReportMetric(tdCPU/n/(tdCaptured/n)*1e9, "tcpdump-cpu-ns/packet")
}

// benchApp is an app namespace pair for one iteration.
type benchApp struct {
	*app
}

func newBenchApp(b *testing.B) *benchApp {
	b.Helper()
	p := netnstest.NewPair(b)
	p.App.ListenUDP(b, netipAppPort(udpPort))
	return &benchApp{&app{pair: p, conn: p.Peer.DialUDP(b, netipAppPort(udpPort))}}
}

func (a *benchApp) burst(b *testing.B, n int) {
	b.Helper()
	msg := make([]byte, 100)
	for i := range n {
		copy(msg, fmt.Sprintf("%08d", i))
		if _, err := a.conn.Write(msg); err != nil {
			b.Fatal(err)
		}
	}
}

// cpuSeconds is a process's user+system CPU time so far.
func cpuSeconds(b *testing.B, pid int) float64 {
	b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command name (which may contain spaces).
	fields := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	utime, _ := strconv.ParseFloat(fields[11], 64)
	stime, _ := strconv.ParseFloat(fields[12], 64)
	return (utime + stime) / 100 // USER_HZ
}

func tcpdumpBurst(b *testing.B, a *benchApp, n int) (captured int, cpu float64) {
	b.Helper()
	out := filepath.Join(b.TempDir(), "tcpdump.pcap")
	cmd := exec.Command("ip", "netns", "exec", a.pair.App.Name, "tcpdump", "-i", "eth0", "-B", "8192", "-s", "65535", "-w", out, "udp")
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	lines := bufio.NewScanner(stderr)
	for lines.Scan() {
		if strings.Contains(lines.Text(), "listening on") {
			break
		}
	}
	a.burst(b, n)
	time.Sleep(300 * time.Millisecond) // let tcpdump's buffer timeout hand over the last block
	cpu = cpuSeconds(b, cmd.Process.Pid)
	_ = cmd.Process.Signal(syscall.SIGINT)
	re := regexp.MustCompile(`^(\d+) packets captured`)
	for lines.Scan() {
		if m := re.FindStringSubmatch(lines.Text()); m != nil {
			captured, _ = strconv.Atoi(m[1])
		}
	}
	_ = cmd.Wait()
	return captured, cpu
}

func agentBurst(b *testing.B, a *benchApp, n int) (captured int, cpu float64) {
	b.Helper()
	p := newPKI(b)
	api := startAPI(b, p, oneInstance("127.0.0.1"), nil)
	agent := startAgentProcess(b, p, api, "127.0.0.1", map[string]string{appGUID + "/0": a.pair.App.Path()})
	resp := startCapture(b, api, url.Values{"filter": {"udp"}, "duration": {"1m"}})
	copier := pcapstream.NewCopier(io.Discard, resp.Body)
	done := make(chan error, 1)
	go func() { done <- copier.Copy() }()
	before := cpuSeconds(b, agent.Process.Pid)
	a.burst(b, n)
	// Until the stream is quiet: every packet the agent kept has arrived.
	last := uint64(0)
	for {
		time.Sleep(300 * time.Millisecond)
		cur := copier.Progress().Packets
		if cur == last {
			break
		}
		last = cur
	}
	cpu = cpuSeconds(b, agent.Process.Pid) - before
	resp.Body.Close()
	<-done
	return int(last), cpu
}
