package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"time"
)

// capture is one of the two paths, started before the traffic and
// finished after it.
type capture interface {
	name() string
	// start captures packets matching filter into the file out, or into
	// stdout when it is set, for traffic of the given length; it returns
	// once the capture runs.
	start(ctx context.Context, filter, out string, stdout *os.File, traffic time.Duration) error
	// finish waits for the capture to end and says what it cost.
	finish(ctx context.Context) (captured, error)
	// processes are the capture's processes, once it runs.
	processes() []namedPID
}

// captured is what a capture says about itself.
type captured struct {
	dropped uint64 // packets the path says it lost
	drops   string // the same, by source
	ended   string // why it ended, if the path says
	cpu     []processCPU
	// launched is when the capture process started, running when it said
	// the capture was on.
	launched, running time.Time
}

type processCPU struct {
	name    string
	seconds float64
}

func (c captured) cpuTotal() float64 {
	var s float64
	for _, p := range c.cpu {
		s += p.seconds
	}
	return s
}

func (c captured) cpuOf(process string) float64 {
	for _, p := range c.cpu {
		if p.name == process {
			return p.seconds
		}
	}
	return 0
}

// tcpdumpSettle is how long tcpdump gets after the traffic: libpcap hands
// over a partly filled ring block only when tcpdump's 1 s timeout
// retires it, and tcpdump discards what it has not been handed on exit.
const tcpdumpSettle = 2 * time.Second

// tcpdumpCapture is the baseline: tcpdump -w in the app namespace, with a
// kernel ring as large as the agent's.
type tcpdumpCapture struct {
	b *bench
	p *proc
}

func (c *tcpdumpCapture) name() string { return "tcpdump" }

func (c *tcpdumpCapture) start(ctx context.Context, filter, out string, stdout *os.File, _ time.Duration) error {
	if stdout != nil {
		out = "-"
	}
	p, err := startProc(procSpec{name: "tcpdump", stdout: stdout, args: []string{
		"ip", "netns", "exec", c.b.topo.app, "tcpdump", "-Z", "root", "-i", "eth0", "-B", strconv.Itoa(c.b.cfg.ringMiB << 10), "-s", "65535", "-w", out, filter}})
	if err != nil {
		return err
	}
	c.p = p
	if _, err := p.waitFor(ctx, regexp.MustCompile(`listening on`), 15*time.Second); err != nil {
		p.stop(syscall.SIGKILL, 5*time.Second)
		return err
	}
	return nil
}

func (c *tcpdumpCapture) processes() []namedPID {
	// ip netns exec execs tcpdump: the same process.
	return []namedPID{{"tcpdump", c.p.pid()}}
}

var tcpdumpDropped = regexp.MustCompile(`^(\d+) packets? dropped by kernel`)

func (c *tcpdumpCapture) finish(ctx context.Context) (captured, error) {
	settleErr := sleep(ctx, tcpdumpSettle)
	if err := c.p.stop(syscall.SIGINT, 30*time.Second); err != nil {
		return captured{}, c.p.fail("%v", err)
	}
	if settleErr != nil {
		return captured{}, settleErr
	}
	m := c.p.out.find(tcpdumpDropped)
	if m == nil {
		return captured{}, c.p.fail("no drop count in its output")
	}
	dropped, _ := strconv.ParseUint(m[1], 10, 64)
	return captured{
		dropped: dropped,
		drops:   "kernel=" + m[1],
		cpu:     []processCPU{{"tcpdump", c.p.cpuUsed()}},
	}, nil
}

// pathCapture is the whole path: pcap-server-cli asks the API, which asks
// the agent over the tunnel; each is a process of its own. One instance
// (-i 0), so the CLI writes pcap, as tcpdump does. The CLI asks
// for a duration a margin longer than the traffic, so that the API ends
// the capture and sends its trailers, which the CLI prints.
type pathCapture struct {
	b                   *bench
	p                   *proc
	duration            time.Duration
	agentCPU0, apiCPU0  float64
	launched, capturing time.Time
}

func (c *pathCapture) name() string { return "whole path" }

func (c *pathCapture) start(ctx context.Context, filter, out string, stdout *os.File, traffic time.Duration) error {
	var err error
	if c.agentCPU0, err = cpuSeconds(c.b.agent.pid()); err != nil {
		return err
	}
	if c.apiCPU0, err = cpuSeconds(c.b.api.pid()); err != nil {
		return err
	}
	if stdout != nil {
		out = "-"
	}
	c.duration = traffic + c.b.cfg.margin
	p, err := startProc(procSpec{
		name:   "pcap-server-cli",
		stdout: stdout,
		// No cf login anywhere near: --token and --app-guid skip it.
		env: []string{"CF_HOME=" + c.b.cfg.work, "PCAP_TOKEN=", "PCAP_API_URL="},
		args: []string{filepath.Join(c.b.cfg.bin, "pcap-server-cli"), "pcap", benchAppName,
			"--api-url", c.b.apiURL, "--token", c.b.token, "--app-guid", benchAppGUID,
			"-i", "0", "-f", filter, "-s", "65535", "--duration", c.duration.String(), "-o", out, "--force"},
	})
	if err != nil {
		return err
	}
	c.p = p
	c.launched = p.started
	l, err := p.waitFor(ctx, regexp.MustCompile(`^Capturing app`), 30*time.Second)
	if err != nil {
		p.stop(syscall.SIGKILL, 5*time.Second)
		return err
	}
	c.capturing = l.at
	return nil
}

func (c *pathCapture) processes() []namedPID {
	return []namedPID{{"agent", c.b.agent.pid()}, {"API", c.b.api.pid()}, {"CLI", c.p.pid()}}
}

var (
	cliSummary = regexp.MustCompile(`^(\d+) packets, .* dropped: (.+); ended: (.+)$`)
	cliDropped = regexp.MustCompile(`^(\d+)(?: \((.+)\))?$`)
)

func (c *pathCapture) finish(ctx context.Context) (captured, error) {
	// The API ends the capture at its duration; the CLI then exits.
	waitErr := c.p.wait(ctx, c.duration+time.Minute)
	agentCPU1, err1 := cpuSeconds(c.b.agent.pid())
	apiCPU1, err2 := cpuSeconds(c.b.api.pid())
	if err := errors.Join(err1, err2); err != nil {
		return captured{}, fmt.Errorf("the agent or the API is gone: %w", err)
	}
	m := c.p.out.find(cliSummary)
	if m == nil {
		return captured{}, c.p.fail("no summary line (%v)", waitErr)
	}
	r := captured{
		drops:    m[2],
		ended:    m[3],
		launched: c.launched,
		running:  c.capturing,
		cpu: []processCPU{
			{"agent", agentCPU1 - c.agentCPU0},
			{"API", apiCPU1 - c.apiCPU0},
			{"CLI", c.p.cpuUsed()},
		},
	}
	if waitErr != nil {
		r.ended += fmt.Sprintf(" (%v)", waitErr)
	}
	if d := cliDropped.FindStringSubmatch(m[2]); d != nil {
		r.dropped, _ = strconv.ParseUint(d[1], 10, 64)
		if d[2] != "" {
			r.drops = d[2]
		}
	}
	return r, nil
}
