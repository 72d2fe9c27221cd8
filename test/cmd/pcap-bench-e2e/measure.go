package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// udpStep is one rate, through both paths.
type udpStep struct {
	rate rate
	runs []udpRun // tcpdump, then the whole path
}

// udpRun is one path at one rate.
type udpRun struct {
	path  string
	sent  uint64 // what reached the app's eth0
	gen   generated
	count pcapCount // what is in the file
	cap   captured
	// flatOut: the generator went as fast as it could.
	flatOut bool
}

// offered is the rate the generator achieved, in packets per second.
func (r udpRun) offered() float64 {
	if r.gen.seconds <= 0 {
		return 0
	}
	return float64(r.sent) / r.gen.seconds
}

func (r udpRun) lost() int64 { return int64(r.sent) - int64(r.count.packets) }

func (r udpRun) lossless() bool { return r.lost() <= 0 }

// cpuPerPacket is a process's CPU time per packet in the file, in µs.
func (r udpRun) cpuPerPacket(seconds float64) float64 {
	if r.count.packets == 0 {
		return 0
	}
	return seconds * 1e6 / float64(r.count.packets)
}

// udpRun sends one step of UDP traffic through capture c into a file on
// tmpfs and counts the file.
func (b *bench) udpRun(ctx context.Context, c capture, pps int) (udpRun, error) {
	r := udpRun{path: c.name(), flatOut: pps == 0}
	file := filepath.Join(b.cfg.out, "udp.pcap")
	if err := c.start(ctx, "udp", file, nil, b.cfg.step); err != nil {
		return r, err
	}
	var sendErr, finishErr error
	r.sent, r.gen, sendErr = b.sendUDP(ctx, pps, b.cfg.step)
	r.cap, finishErr = c.finish(ctx)
	if err := errors.Join(sendErr, finishErr); err != nil {
		os.Remove(file)
		return r, err
	}
	var err error
	r.count, err = countPcapFile(file)
	return r, err
}

// tcpStep is one iperf3 rate through both paths (and, unpaced, without
// a capture first).
type tcpStep struct {
	rate tcpRate
	runs []tcpRun
}

// run returns the step's run through path, if there is one.
func (s tcpStep) run(path string) (tcpRun, bool) {
	for _, r := range s.runs {
		if r.path == path {
			return r, true
		}
	}
	return tcpRun{}, false
}

// tcpRun is one iperf3 run, without a capture (c nil) or through one,
// whose pcap stream is counted as it is written: into a file on tmpfs,
// read and (unless it is to grow) freed behind the writer, or into a
// pipe.
type tcpRun struct {
	path  string
	iperf iperfResult
	count pcapCount
	cap   captured
}

// nsPerByte is a process's CPU time per captured byte (packet data, as
// counted in the file), in ns.
func (r tcpRun) nsPerByte(seconds float64) float64 {
	if r.count.bytes == 0 {
		return 0
	}
	return seconds * 1e9 / float64(r.count.bytes)
}

func (b *bench) tcpRun(ctx context.Context, c capture, rt tcpRate) (tcpRun, error) {
	r := tcpRun{path: "no capture"}
	if c == nil {
		progress("iperf3 TCP %s, %s, without a capture", rt.label, b.cfg.tcp)
		var err error
		r.iperf, err = b.runIperf(ctx, b.cfg.tcp, rt.bitrate, nil)
		return r, err
	}
	r.path = c.name()
	progress("iperf3 TCP %s, %s, through %s into a %s", rt.label, b.cfg.tcp, c.name(), b.cfg.tcpOutput)
	counted, written, err := b.startTCPCapture(ctx, c)
	if err != nil {
		return r, err
	}
	var prof *profiler
	if b.cfg.profile != "" && rt.bitrate == "" {
		prof = &profiler{dir: b.cfg.profile, path: c.name(), procs: c.processes(), window: b.cfg.tcp / 2}
	}
	var iperfErr, finishErr, countErr, profErr error
	r.iperf, iperfErr = b.runIperf(ctx, b.cfg.tcp, rt.bitrate, prof)
	r.cap, finishErr = c.finish(ctx)
	written()
	r.count, countErr = counted()
	if prof != nil {
		profErr = prof.report(ctx)
	}
	return r, errors.Join(iperfErr, finishErr, countErr, profErr)
}

// startTCPCapture starts c writing into the TCP step's output, a file or
// a pipe, and counts what it writes. Once the capture has finished, the
// caller calls written, then counted for the count.
func (b *bench) startTCPCapture(ctx context.Context, c capture) (counted func() (pcapCount, error), written func(), err error) {
	if b.cfg.tcpOutput == outputPipe {
		pw, counted, err := readPipe(countPcap)
		if err != nil {
			return nil, nil, err
		}
		err = c.start(ctx, "tcp", "", pw, b.cfg.tcp)
		pw.Close() // the capture process holds its own end
		if err != nil {
			_, _ = counted()
			return nil, nil, err
		}
		return counted, func() {}, nil
	}
	file := filepath.Join(b.cfg.out, "tcp.pcap")
	if err := c.start(ctx, "tcp", file, nil, b.cfg.tcp); err != nil {
		os.Remove(file)
		return nil, nil, err
	}
	done := make(chan struct{})
	type result struct {
		c   pcapCount
		err error
	}
	res := make(chan result, 1)
	go func() {
		c, err := countFollowed(file, done, b.cfg.tcpOutput == outputGrowing)
		res <- result{c, err}
	}()
	counted = func() (pcapCount, error) {
		r := <-res
		return r.c, r.err
	}
	return counted, sync.OnceFunc(func() { close(done) }), nil
}

// readPipe runs read on the read end of a new pipe and returns the write
// end, for a capture's standard output, and a function that waits for
// what read returns once the capture has exited.
func readPipe[T any](read func(io.Reader) (T, error)) (*os.File, func() (T, error), error) {
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, nil, err
	}
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() {
		defer pr.Close()
		v, err := read(pr)
		done <- result{v, err}
	}()
	wait := func() (T, error) {
		select {
		case r := <-done:
			return r.v, r.err
		case <-time.After(30 * time.Second):
			var zero T
			return zero, errors.New("the capture's output did not end within 30s of its exit")
		}
	}
	return pw, wait, nil
}

// idleResult is CPU time over the same window without and with one
// capture open on the quiet app.
type idleResult struct {
	window              time.Duration
	agentNone, apiNone  float64 // seconds
	agentOne, apiOne    float64
	cliSeconds, cliLife float64
}

func (b *bench) idleRun(ctx context.Context) (idleResult, error) {
	r := idleResult{window: b.cfg.idle}
	agent0, api0, err := b.serverCPU()
	if err != nil {
		return r, err
	}
	if err := sleep(ctx, r.window); err != nil {
		return r, err
	}
	agent1, api1, err := b.serverCPU()
	if err != nil {
		return r, err
	}
	r.agentNone, r.apiNone = agent1-agent0, api1-api0

	c := &pathCapture{b: b}
	file := filepath.Join(b.cfg.out, "idle.pcap")
	defer os.Remove(file)
	// Traffic of window+1s: the capture outlasts the window by the margin.
	if err := c.start(ctx, "udp", file, nil, r.window+time.Second); err != nil {
		return r, err
	}
	agent2, api2, err := b.serverCPU()
	if err == nil {
		err = sleep(ctx, r.window)
	}
	agent3, api3, err2 := b.serverCPU()
	cap, err3 := c.finish(ctx)
	if err := errors.Join(err, err2, err3); err != nil {
		return r, err
	}
	r.agentOne, r.apiOne = agent3-agent2, api3-api2
	r.cliSeconds = cap.cpuOf("CLI")
	r.cliLife = time.Since(c.launched).Seconds()
	return r, nil
}

func (b *bench) serverCPU() (agent, api float64, err error) {
	agent, err1 := cpuSeconds(b.agent.pid())
	api, err2 := cpuSeconds(b.api.pid())
	return agent, api, errors.Join(err1, err2)
}

// latencyResult is how long packets took from their capture timestamp to
// a reader of the CLI's stdout, and how long the CLI took to start.
type latencyResult struct {
	pps                  int
	samples              []time.Duration // sorted
	firstLatency         time.Duration   // of the first packet read
	toCapturing, toFirst time.Duration
	cap                  captured
}

func (b *bench) latencyRun(ctx context.Context) (latencyResult, error) {
	r := latencyResult{pps: b.cfg.latencyPPS}
	gen, err := b.startGenerator(r.pps)
	if err != nil {
		return r, err
	}
	defer func() { _, _ = stopGenerator(gen) }()
	// Launch the CLI only once packets flow, so that the time to the first
	// packet is the path's and not the generator's start-up.
	if err := b.waitForTraffic(ctx, gen); err != nil {
		return r, err
	}

	pw, read, err := readPipe(readArrivals)
	if err != nil {
		return r, err
	}
	c := &pathCapture{b: b}
	err = c.start(ctx, "udp", "", pw, b.cfg.latency)
	pw.Close()
	if err != nil {
		_, _ = read()
		return r, err
	}
	r.cap, err = c.finish(ctx)
	got, readErr := read()
	if err := errors.Join(err, readErr); err != nil {
		return r, err
	}
	if len(got.latencies) == 0 {
		return r, fmt.Errorf("no packet reached the reader (the CLI said: %s)", r.cap.ended)
	}
	r.firstLatency = got.latencies[0]
	r.samples = slices.Sorted(slices.Values(got.latencies))
	r.toCapturing = c.capturing.Sub(c.launched)
	r.toFirst = got.first.Sub(c.launched)
	return r, nil
}

// waitForTraffic waits until the app's eth0 receives packets, at most
// 10 s, looking at its counter every 10 ms.
func (b *bench) waitForTraffic(ctx context.Context, gen *proc) error {
	before, err := b.topo.appReceived(ctx)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if err := sleep(ctx, 10*time.Millisecond); err != nil {
			return err
		}
		now, err := b.topo.appReceived(ctx)
		if err != nil {
			return err
		}
		if now > before {
			return nil
		}
	}
	return gen.fail("no packet reached the app within 10s")
}

// percentile of sorted samples, nearest rank.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p/100*float64(len(sorted))+0.999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
