package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"
)

// The fast path's targets (issue 9), checked in the report.
const (
	targetCPURatio   = 4.0 // whole path's CPU per packet at most this many times tcpdump's
	targetTCPCapture = 0.8 // whole path's captured TCP bytes at least this share of tcpdump's, unpaced
)

// byteBudgets are each process's CPU per captured byte at full snaplen,
// at most this many times tcpdump's in the same run (issue 19), checked
// on the unpaced TCP step.
var byteBudgets = []struct {
	process string
	ratio   float64
}{{"agent", 1.5}, {"API", 1}, {"CLI", 0.5}, {"whole path", 3}}

type report struct {
	machine string
	cfg     config
	udp     []udpStep
	tcp     []tcpStep
	idle    idleResult
	latency latencyResult
}

// describeMachine is what the numbers depend on.
func describeMachine() string {
	model := "unknown CPU"
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	load, _ := os.ReadFile("/proc/loadavg")
	loadFields := strings.Fields(string(load))
	if len(loadFields) > 3 {
		loadFields = loadFields[:3]
	}
	return fmt.Sprintf("%d CPUs (%s), Linux %s, load average %s at the start, %s",
		runtime.NumCPU(), model, strings.TrimSpace(string(kernel)), strings.Join(loadFields, " "), time.Now().UTC().Format("2006-01-02 15:04 UTC"))
}

func (r report) print(w io.Writer) {
	fmt.Fprintf(w, "\n## End-to-end benchmark: the whole path against tcpdump\n\n")
	fmt.Fprintf(w, "Machine: %s.\n", r.machine)
	if r.cfg.code != "" {
		fmt.Fprintf(w, "Code: %s.\n", r.cfg.code)
	}
	fmt.Fprintf(w, "Traffic: 60-byte UDP frames from a peer namespace over a veth into the app namespace, %s per step and path, "+
		"filter `udp`, snaplen 65535, kernel ring %d MiB in both paths, files on tmpfs. "+
		"Rate steps come from a paced sender (an AF_PACKET socket, catching up every millisecond; trafgen's --rate sends each second's packets "+
		"in one burst), max from trafgen (one worker). "+
		"Whole path: pcap-server (agent) -> mTLS tunnel -> pcap-server-api -> pcap-server-cli `-i 0 -o FILE`, three processes, each with its own CPU. "+
		"Sent: packets the app's eth0 received; achieved: sent over the generator's run time. "+
		"CPU: utime+stime per process (/proc/PID/stat for the agent and the API; wait4 for tcpdump and the CLI, which exit) "+
		"over the packets in the file. A shared, noisy machine: compare the two paths within a run.\n\n", r.cfg.step, r.cfg.ringMiB)
	if len(r.udp) > 0 {
		r.printUDP(w)
		r.printTargets(w)
	}
	if len(r.tcp) > 0 {
		r.printTCP(w)
	}
	if r.idle.window > 0 {
		r.printIdle(w)
	}
	if len(r.latency.samples) > 0 {
		r.printLatency(w)
	}
}

func (r report) printUDP(w io.Writer) {
	t := table{header: []string{"rate", "path", "achieved kpps", "sent", "in file", "lost", "drops reported", "CPU µs/packet", "by process (µs/packet)", "ended"}}
	for _, s := range r.udp {
		for _, run := range s.runs {
			var by []string
			for _, p := range run.cap.cpu {
				by = append(by, fmt.Sprintf("%s %.2f", p.name, run.cpuPerPacket(p.seconds)))
			}
			t.add(s.rate.label, run.path, fmt.Sprintf("%.1f", run.offered()/1e3),
				fmt.Sprint(run.sent), fmt.Sprint(run.count.packets), fmt.Sprint(max(run.lost(), 0)),
				run.cap.drops, fmt.Sprintf("%.2f", run.cpuPerPacket(run.cap.cpuTotal())), strings.Join(by, ", "), orDash(run.cap.ended))
		}
	}
	t.print(w)
}

// printTargets compares the two paths step by step and checks the fast
// path's targets.
func (r report) printTargets(w io.Writer) {
	fmt.Fprintln(w)
	t := table{header: []string{"rate", "CPU per packet, whole path / tcpdump", "lost by tcpdump", "lost by the whole path"}}
	var worstRatio float64
	worstAt := ""
	var lossyWhereTcpdumpIsNot []string
	best := map[string]udpRun{}
	for _, s := range r.udp {
		td, wp := s.runs[0], s.runs[1]
		ratio := 0.0
		if c := td.cpuPerPacket(td.cap.cpuTotal()); c > 0 {
			ratio = wp.cpuPerPacket(wp.cap.cpuTotal()) / c
		}
		if ratio > worstRatio {
			worstRatio, worstAt = ratio, s.rate.label
		}
		if td.lossless() && !wp.lossless() {
			lossyWhereTcpdumpIsNot = append(lossyWhereTcpdumpIsNot, s.rate.label)
		}
		for _, run := range s.runs {
			if run.lossless() && run.offered() > best[run.path].offered() {
				best[run.path] = run
			}
		}
		t.add(s.rate.label, fmt.Sprintf("%.2f", ratio), lossText(td), lossText(wp))
	}
	t.print(w)
	fmt.Fprintln(w)
	for _, path := range []string{"tcpdump", "whole path"} {
		b, ok := best[path]
		if !ok {
			fmt.Fprintf(w, "- Highest rate held without loss, %s: none of the steps.\n", path)
			continue
		}
		limit := ""
		if b.flatOut {
			limit = " (as fast as the generator went: the path was not the limit)"
		}
		fmt.Fprintf(w, "- Highest rate held without loss, %s: %.1f kpps%s.\n", path, b.offered()/1e3, limit)
	}
	fmt.Fprintf(w, "- Target, CPU per packet at most %.0f× tcpdump's: worst %.2f× (at %s): %s.\n",
		targetCPURatio, worstRatio, orDash(worstAt), metText(worstRatio <= targetCPURatio))
	lossy := "none"
	if len(lossyWhereTcpdumpIsNot) > 0 {
		lossy = strings.Join(lossyWhereTcpdumpIsNot, ", ")
	}
	fmt.Fprintf(w, "- Target, lossless wherever tcpdump is: steps where only the whole path lost packets: %s: %s.\n",
		lossy, metText(len(lossyWhereTcpdumpIsNot) == 0))
	if ratio, ok := r.tcpRatio(); ok {
		fmt.Fprintf(w, "- Target, TCP captured bytes at least %.1f× tcpdump's (unpaced): %.2f×: %s.\n", targetTCPCapture, ratio, metText(ratio >= targetTCPCapture))
	}
}

// unpacedTCP is the unpaced TCP step, if it ran.
func (r report) unpacedTCP() (tcpStep, bool) {
	for _, s := range r.tcp {
		if s.rate.bitrate == "" {
			return s, true
		}
	}
	return tcpStep{}, false
}

// keptShare is the whole path's captured bytes over tcpdump's.
func (s tcpStep) keptShare() (float64, bool) {
	td, ok1 := s.run("tcpdump")
	wp, ok2 := s.run("whole path")
	if !ok1 || !ok2 || td.count.bytes == 0 {
		return 0, false
	}
	return float64(wp.count.bytes) / float64(td.count.bytes), true
}

func (r report) tcpRatio() (float64, bool) {
	s, ok := r.unpacedTCP()
	if !ok {
		return 0, false
	}
	return s.keptShare()
}

func (r report) printTCP(w io.Writer) {
	where := "both captures write a file on tmpfs (`tcpdump -w FILE`, `pcap-server-cli -o FILE`), which the benchmark reads and frees behind the writer"
	switch r.cfg.tcpOutput {
	case outputPipe:
		where = "both captures write into a pipe (`-w -`, `-o -`) that the benchmark reads"
	case outputGrowing:
		where = "both captures write a file on tmpfs (`tcpdump -w FILE`, `pcap-server-cli -o FILE`) that grows into fresh memory until the step ends"
	}
	fmt.Fprintf(w, "\n### iperf3 TCP, %s per run, filter `tcp`, snaplen 65535; %s\n\n", r.cfg.tcp, where)
	t := table{header: []string{"iperf3 -b", "capture", "iperf3 Gbit/s", "iperf3 MB", "captured packets", "captured MB", "captured / tcpdump", "drops reported", "ended"}}
	for _, s := range r.tcp {
		share, hasShare := s.keptShare()
		for _, run := range s.runs {
			captured, kept, packets := "-", "-", "-"
			if run.path != "no capture" {
				packets = fmt.Sprint(run.count.packets)
				captured = fmt.Sprintf("%.0f", float64(run.count.bytes)/1e6)
			}
			if run.path == "whole path" && hasShare {
				kept = fmt.Sprintf("%.3f", share)
			}
			t.add(s.rate.label, run.path, fmt.Sprintf("%.2f", run.iperf.bitsPerSecond/1e9), fmt.Sprintf("%.0f", float64(run.iperf.bytes)/1e6),
				packets, captured, kept, orDash(run.cap.drops), orDash(run.cap.ended))
		}
	}
	t.print(w)

	fmt.Fprintf(w, "\nCPU per captured byte (utime+stime over the bytes of packet data in the capture), in ns, and as a multiple of tcpdump's in the same step:\n\n")
	t = table{header: []string{"iperf3 -b", "tcpdump", "agent", "API", "CLI", "whole path"}}
	for _, s := range r.tcp {
		td, ok1 := s.run("tcpdump")
		wp, ok2 := s.run("whole path")
		if !ok1 || !ok2 {
			continue
		}
		base := td.nsPerByte(td.cap.cpuTotal())
		cells := []string{s.rate.label, fmt.Sprintf("%.2f", base)}
		for _, b := range byteBudgets {
			ns := wp.nsPerByte(wp.processCPU(b.process))
			cells = append(cells, fmt.Sprintf("%.2f (%s)", ns, times(ns, base)))
		}
		t.add(cells...)
	}
	t.print(w)
	fmt.Fprintln(w)

	if s, ok := r.unpacedTCP(); ok {
		td, _ := s.run("tcpdump")
		wp, _ := s.run("whole path")
		base := td.nsPerByte(td.cap.cpuTotal())
		for _, b := range byteBudgets {
			ratio := 0.0
			if base > 0 {
				ratio = wp.nsPerByte(wp.processCPU(b.process)) / base
			}
			fmt.Fprintf(w, "- Budget, %s CPU per captured byte at most %.1f× tcpdump's (unpaced): %.2f×: %s.\n", b.process, b.ratio, ratio, metText(base > 0 && ratio <= b.ratio))
		}
	}
	var paced, lossy []string
	for _, s := range r.tcp {
		td, ok1 := s.run("tcpdump")
		wp, ok2 := s.run("whole path")
		if s.rate.bitrate == "" || !ok1 || !ok2 {
			continue
		}
		share, _ := s.keptShare()
		paced = append(paced, fmt.Sprintf("-b %s %.3f", s.rate.label, share))
		if td.cap.dropped == 0 && wp.cap.dropped != 0 {
			lossy = append(lossy, s.rate.label)
		}
	}
	if len(paced) > 0 {
		lossyText := "none"
		if len(lossy) > 0 {
			lossyText = strings.Join(lossy, ", ")
		}
		fmt.Fprintf(w, "- Paced TCP, bytes the whole path kept over tcpdump's: %s. Target, lossless wherever tcpdump is: rates where only the whole path reported drops: %s: %s.\n",
			strings.Join(paced, ", "), lossyText, metText(len(lossy) == 0))
	}
}

// processCPU is the CPU seconds of one process of the run, or of all of
// them for "whole path".
func (r tcpRun) processCPU(process string) float64 {
	if process == "whole path" {
		return r.cap.cpuTotal()
	}
	return r.cap.cpuOf(process)
}

func times(v, base float64) string {
	if base <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f×", v/base)
}

func (r report) printIdle(w io.Writer) {
	i := r.idle
	pct := func(seconds float64) string { return fmt.Sprintf("%.2f", seconds/i.window.Seconds()*100) }
	fmt.Fprintf(w, "\n### Idle: CPU over %s, no traffic (%% of one core; /proc's 10 ms ticks)\n\n", i.window)
	t := table{header: []string{"process", "no capture", "one capture open", "per idle capture"}}
	t.add("agent", pct(i.agentNone), pct(i.agentOne), pct(i.agentOne-i.agentNone))
	t.add("API", pct(i.apiNone), pct(i.apiOne), pct(i.apiOne-i.apiNone))
	cli := "-"
	if i.cliLife > 0 {
		cli = fmt.Sprintf("%.2f", i.cliSeconds/i.cliLife*100)
	}
	t.add("CLI", "-", cli, cli)
	t.print(w)
}

func (r report) printLatency(w io.Writer) {
	l := r.latency
	fmt.Fprintf(w, "\n### Latency at %d packets per second, whole path, `-o -` into a reader\n\n", l.pps)
	t := table{header: []string{"packets", "capture to client p50", "p99", "max", "CLI launch to capture started", "CLI launch to first packet", "first packet's latency"}}
	t.add(fmt.Sprint(len(l.samples)), ms(percentile(l.samples, 50)), ms(percentile(l.samples, 99)), ms(l.samples[len(l.samples)-1]),
		ms(l.toCapturing), ms(l.toFirst), ms(l.firstLatency))
	t.print(w)
	fmt.Fprintf(w, "\nCapture to client: the packet's kernel timestamp to the moment the reader had its record (same clock). "+
		"The first packet waits for the next one sent, up to %s after the capture started.\n", time.Second/time.Duration(l.pps))
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

func lossText(r udpRun) string {
	if r.lossless() {
		return "0"
	}
	return fmt.Sprintf("%d (%.2f%%)", r.lost(), float64(r.lost())/float64(r.sent)*100)
}

func metText(ok bool) string {
	if ok {
		return "met"
	}
	return "not met"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// table is a markdown table with its columns padded, readable as text
// and pastable into docs/PERFORMANCE.md.
type table struct {
	header []string
	rows   [][]string
}

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

func (t *table) print(w io.Writer) {
	widths := make([]int, len(t.header))
	for _, row := range append([][]string{t.header}, t.rows...) {
		for i, c := range row {
			widths[i] = max(widths[i], len([]rune(c)))
		}
	}
	line := func(cells []string) {
		var b strings.Builder
		b.WriteString("|")
		for i, c := range cells {
			b.WriteString(" " + c + strings.Repeat(" ", widths[i]-len([]rune(c))) + " |")
		}
		fmt.Fprintln(w, b.String())
	}
	line(t.header)
	sep := make([]string, len(widths))
	for i, n := range widths {
		sep[i] = strings.Repeat("-", n)
	}
	line(sep)
	for _, row := range t.rows {
		line(row)
	}
}
