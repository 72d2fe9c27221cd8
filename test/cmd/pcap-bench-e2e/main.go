// Command pcap-bench-e2e is `make bench-e2e`: the whole capture path
// (pcap-server agent -> mTLS tunnel -> pcap-server-api -> pcap-server-cli,
// each a process of its own) against tcpdump -w on the same traffic, in
// network namespaces it creates and removes. It prints markdown tables:
// per UDP rate step what was sent, what is in the file, the drops each
// path reports by source and the CPU time per packet of every process; an
// iperf3 TCP run; the CPU an idle capture costs; and the latency from
// capture to client at a low rate. scripts/bench-e2e.sh installs what it
// needs, builds the binaries and runs it. It is not part of the release.
package main

import (
	"github.com/cloudfoundry/pcap-server-release/cellagent/agentconfig"

	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// config is the command line.
type config struct {
	bin, work, out     string // binaries; configs and logs; capture files (tmpfs)
	code               string // which code is measured, for the report
	appNS, peerNS      string
	rates              []rate
	step, margin       time.Duration
	tcp, idle, latency time.Duration
	tcpRates           []tcpRate
	tcpOutput          string // outputFile, outputGrowing or outputPipe: where the TCP steps' captures go
	latencyPPS         int
	ringMiB            int    // kernel ring of both paths
	profile            string // directory for perf profiles of the unpaced TCP step; empty: none
}

// Where the TCP steps' captures write: a file on tmpfs, as tcpdump -w
// FILE and pcap-server-cli -o FILE do in use, freed behind the writer or
// kept whole until the step ends (gigabytes of memory), or a pipe (-w -,
// -o -).
const (
	outputFile    = "file"
	outputGrowing = "growing-file"
	outputPipe    = "pipe"
)

// tcpRate is one TCP step: iperf3's -b (a bit rate it paces to), or
// unpaced (max).
type tcpRate struct {
	label   string
	bitrate string // iperf3 -b; empty: as fast as it goes
}

func parseTCPRates(s string) ([]tcpRate, error) {
	return parseSteps(s, tcpRate{label: "max"}, func(f string) (tcpRate, error) {
		num := strings.TrimRight(f, "KMG")
		v, err := strconv.ParseFloat(num, 64)
		if err != nil || v <= 0 || len(f)-len(num) > 1 {
			return tcpRate{}, fmt.Errorf("TCP rate %q: want iperf3's -b like 500M, 1G or 2.5G, or max, or none", f)
		}
		return tcpRate{label: f, bitrate: f}, nil
	})
}

// parseSteps reads a comma-separated list of steps: max is maxStep,
// anything else is parse's, and none alone is no step.
func parseSteps[T any](s string, maxStep T, parse func(string) (T, error)) ([]T, error) {
	if strings.TrimSpace(s) == "none" {
		return nil, nil
	}
	var steps []T
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "max" {
			steps = append(steps, maxStep)
			continue
		}
		step, err := parse(f)
		if err != nil {
			return nil, err
		}
		steps = append(steps, step)
	}
	return steps, nil
}

// rate is one step: packets per second, 0 for as fast as the generator
// goes.
type rate struct {
	label string
	pps   int
}

func parseRates(s string) ([]rate, error) {
	return parseSteps(s, rate{label: "max", pps: 0}, func(f string) (rate, error) {
		mult := 1.0
		num := f
		switch {
		case strings.HasSuffix(f, "k"):
			mult, num = 1e3, strings.TrimSuffix(f, "k")
		case strings.HasSuffix(f, "M"):
			mult, num = 1e6, strings.TrimSuffix(f, "M")
		}
		v, err := strconv.ParseFloat(num, 64)
		if err != nil || v*mult < 1 {
			return rate{}, fmt.Errorf("rate %q: want packets per second like 100k, 1.5M or 5000, or max", f)
		}
		return rate{label: f, pps: int(v * mult)}, nil
	})
}

func parseFlags(args []string) (config, error) {
	var c config
	fs := flag.NewFlagSet("pcap-bench-e2e", flag.ContinueOnError)
	fs.StringVar(&c.bin, "bin", "", "directory holding pcap-server, pcap-server-api and pcap-server-cli (required)")
	fs.StringVar(&c.work, "work", "", "directory for certificates, configs and logs (required)")
	fs.StringVar(&c.out, "out", "", "directory for the capture files, on tmpfs (required)")
	fs.StringVar(&c.code, "code", "", "which code this is (git describe), printed in the report")
	fs.StringVar(&c.appNS, "app-ns", fmt.Sprintf("pcapbench-app-%d", os.Getpid()), "name of the app's network namespace to create")
	fs.StringVar(&c.peerNS, "peer-ns", fmt.Sprintf("pcapbench-peer-%d", os.Getpid()), "name of the traffic generator's network namespace to create")
	rates := fs.String("rates", "100k,250k,400k,max", "UDP rate steps in packets per second, comma-separated; max: as fast as trafgen goes; none: no UDP step")
	tcpRates := fs.String("tcp-rates", "1G,2G,3G,max", "TCP steps, comma-separated: iperf3's -b (paced), max (unpaced), or none")
	fs.StringVar(&c.tcpOutput, "tcp-output", outputFile, "where the TCP steps' captures write: file (on tmpfs, read and freed behind the writer), growing-file (on tmpfs, kept whole until the step ends: needs memory for the whole capture) or pipe")
	fs.StringVar(&c.profile, "profile", "", "directory for perf profiles of each process during the unpaced TCP step (needs perf); empty: no profile")
	fs.DurationVar(&c.step, "step", 8*time.Second, "traffic per rate step and path")
	fs.DurationVar(&c.margin, "margin", 4*time.Second, "how much longer than the traffic the whole path's capture runs (--duration)")
	fs.DurationVar(&c.tcp, "tcp", 8*time.Second, "length of each iperf3 TCP run; 0 skips them (as -tcp-rates none does)")
	fs.DurationVar(&c.idle, "idle", 10*time.Second, "window of the idle CPU measurement; 0 skips it")
	fs.DurationVar(&c.latency, "latency", 10*time.Second, "length of the latency measurement; 0 skips it")
	fs.IntVar(&c.latencyPPS, "latency-pps", 10, "packet rate of the latency measurement")
	fs.IntVar(&c.ringMiB, "ring", int(agentconfig.Default().Limits.BufferBytes>>20), "kernel ring of both paths in MiB: tcpdump -B and the agent's limits.buffer_bytes (default: the agent's default)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	var problems []string
	if c.bin == "" || c.work == "" || c.out == "" {
		problems = append(problems, "-bin, -work and -out are required")
	}
	var err error
	if c.rates, err = parseRates(*rates); err != nil {
		problems = append(problems, err.Error())
	}
	if c.tcpRates, err = parseTCPRates(*tcpRates); err != nil {
		problems = append(problems, err.Error())
	}
	if c.tcpOutput != outputFile && c.tcpOutput != outputGrowing && c.tcpOutput != outputPipe {
		problems = append(problems, fmt.Sprintf("-tcp-output %q: want file, growing-file or pipe", c.tcpOutput))
	}
	if c.step < time.Second || c.margin < time.Second {
		problems = append(problems, "-step and -margin must be at least 1s")
	}
	if c.ringMiB < 1 || c.ringMiB > 1024 {
		problems = append(problems, "-ring must be 1 to 1024 MiB")
	}
	if c.latencyPPS < 1 {
		problems = append(problems, "-latency-pps must be positive")
	}
	if len(problems) > 0 {
		return c, errors.New(strings.Join(problems, "; "))
	}
	return c, nil
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "send" {
		if err := runSend(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "pcap-bench-e2e send:", err)
			os.Exit(1)
		}
		return
	}
	cfg, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "pcap-bench-e2e:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err = run(ctx, cfg)
	interrupted := ctx.Err() != nil
	stop()
	switch {
	case interrupted:
		fmt.Fprintln(os.Stderr, "pcap-bench-e2e: interrupted; what it started and created is gone")
		os.Exit(130)
	case err != nil:
		fmt.Fprintln(os.Stderr, "pcap-bench-e2e:", err)
		os.Exit(1)
	}
}

// bench is one run of the benchmark.
type bench struct {
	cfg         config
	topo        *topology
	trafgenConf string
	self        string // this program, for its send subcommand
	api, agent  *proc
	apiURL      string
	token       string
}

func run(ctx context.Context, cfg config) error {
	for _, tool := range []string{"ip", "tcpdump", "trafgen", "iperf3"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s is not installed (scripts/bench-e2e.sh installs it)", tool)
		}
	}
	r := report{machine: describeMachine(), cfg: cfg}
	b := &bench{cfg: cfg}
	var err error
	if b.self, err = os.Executable(); err != nil {
		return err
	}
	progress("creating network namespaces %s (app, eth0 %s) and %s (traffic, %s)", cfg.appNS, appIP, cfg.peerNS, peerIP)
	topo, err := newTopology(ctx, cfg.appNS, cfg.peerNS)
	if err != nil {
		return err
	}
	defer topo.remove()
	b.topo = topo
	if b.trafgenConf, err = writeTrafgenConfig(cfg.work, topo.appMAC); err != nil {
		return err
	}
	progress("starting pcap-server-api and pcap-server (dev mode; logs in %s)", cfg.work)
	defer b.stopServers()
	if err := b.startServers(ctx); err != nil {
		return err
	}

	for _, rt := range cfg.rates {
		step := udpStep{rate: rt}
		for _, c := range []capture{&tcpdumpCapture{b: b}, &pathCapture{b: b}} {
			progress("UDP %s: %s, %s of traffic", rt.label, c.name(), cfg.step)
			res, err := b.udpRun(ctx, c, rt.pps)
			if err != nil {
				return fmt.Errorf("UDP %s through %s: %w", rt.label, c.name(), err)
			}
			progress("  sent %d, in the file %d, dropped %s", res.sent, res.count.packets, res.cap.drops)
			step.runs = append(step.runs, res)
		}
		r.udp = append(r.udp, step)
	}
	if cfg.tcp > 0 {
		for _, rt := range cfg.tcpRates {
			step := tcpStep{rate: rt}
			captures := []capture{&tcpdumpCapture{b: b}, &pathCapture{b: b}}
			if rt.bitrate == "" {
				// What iperf3 does alone on this machine, for scale.
				captures = append([]capture{nil}, captures...)
			}
			for _, c := range captures {
				res, err := b.tcpRun(ctx, c, rt)
				if err != nil {
					return fmt.Errorf("iperf3 -b %s with %s: %w", rt.label, res.path, err)
				}
				progress("  iperf3 %.2f Gbit/s; captured %d packets, %.0f MB; dropped %s", res.iperf.bitsPerSecond/1e9, res.count.packets, float64(res.count.bytes)/1e6, orDash(res.cap.drops))
				step.runs = append(step.runs, res)
			}
			r.tcp = append(r.tcp, step)
		}
	}
	if cfg.idle > 0 {
		progress("idle: the agent's CPU over %s without a capture, then with one on the quiet app", cfg.idle)
		if r.idle, err = b.idleRun(ctx); err != nil {
			return fmt.Errorf("idle: %w", err)
		}
	}
	if cfg.latency > 0 {
		progress("latency: %d packets per second for %s through the whole path to a reader", cfg.latencyPPS, cfg.latency)
		if r.latency, err = b.latencyRun(ctx); err != nil {
			return fmt.Errorf("latency: %w", err)
		}
	}
	r.print(os.Stdout)
	return nil
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "== "+format+"\n", args...)
}
