package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"time"
)

// trafgenFrame is trafgen's packet, the paced sender's udpFrame: a 60-byte
// Ethernet frame (14 + 20 + 8 + 18 bytes of payload) to a port nothing
// listens on, so the app answers with (rate-limited) ICMP, which the
// captures filter out.
const trafgenFrame = `{ eth(da=%s), ipv4(saddr=` + peerIP + `, daddr=` + appIP + `, ttl=64), udp(sp=40000, dp=9), fill(0x61, 18) }`

func writeTrafgenConfig(dir, appMAC string) (string, error) {
	path := filepath.Join(dir, "udp60.trafgen")
	return path, os.WriteFile(path, []byte(fmt.Sprintf(trafgenFrame, appMAC)+"\n"), 0o644)
}

// generated is what the generator says it did.
type generated struct {
	packets uint64
	seconds float64 // how long it sent
}

var (
	trafgenPackets = regexp.MustCompile(`^\s*(\d+) packets outgoing`)
	trafgenTime    = regexp.MustCompile(`^\s*(\d+) sec, (\d+) usec on CPU`)
	senderSummary  = regexp.MustCompile(`^sent (\d+) packets in ([0-9.]+) s`)
)

// startGenerator sends frames from the peer namespace until stopped: at
// pps with the paced sender, or as fast as trafgen goes (pps 0) with one
// trafgen worker (-P 1: the other core is the captures'), which leaves
// the host's socket memory and IRQ settings alone.
func (b *bench) startGenerator(pps int) (*proc, error) {
	if pps > 0 {
		return startProc(procSpec{name: "paced sender", args: []string{"ip", "netns", "exec", b.topo.peer, b.self, "send",
			"-dev", b.topo.peerDev, "-dst-mac", b.topo.appMAC, "-pps", strconv.Itoa(pps)}})
	}
	return startProc(procSpec{name: "trafgen", args: []string{"ip", "netns", "exec", b.topo.peer, "trafgen",
		"--dev", b.topo.peerDev, "--conf", b.trafgenConf, "--cpus", "1", "--no-sock-mem", "--notouch-irq"}})
}

// stopGenerator stops it and reads what it says it sent.
func stopGenerator(p *proc) (generated, error) {
	if err := p.stop(syscall.SIGINT, 10*time.Second); err != nil {
		return generated{}, p.fail("%v", err)
	}
	var g generated
	if m := p.out.find(senderSummary); m != nil {
		g.packets, _ = strconv.ParseUint(m[1], 10, 64)
		g.seconds, _ = strconv.ParseFloat(m[2], 64)
		return g, nil
	}
	m := p.out.find(trafgenPackets)
	if m == nil {
		return g, p.fail("no packet count in its output")
	}
	g.packets, _ = strconv.ParseUint(m[1], 10, 64)
	if m := p.out.find(trafgenTime); m != nil {
		sec, _ := strconv.ParseFloat(m[1], 64)
		usec, _ := strconv.ParseFloat(m[2], 64)
		g.seconds = sec + usec/1e6
	} else {
		g.seconds = time.Since(p.started).Seconds()
	}
	return g, nil
}

// sendUDP runs the generator for d and counts what reached the app.
func (b *bench) sendUDP(ctx context.Context, pps int, d time.Duration) (sent uint64, g generated, err error) {
	before, err := b.topo.appReceived(ctx)
	if err != nil {
		return 0, g, err
	}
	gen, err := b.startGenerator(pps)
	if err != nil {
		return 0, g, err
	}
	waitErr := sleep(ctx, d)
	g, err = stopGenerator(gen)
	if waitErr != nil {
		return 0, g, waitErr
	}
	if err != nil {
		return 0, g, err
	}
	after, err := b.topo.appReceived(ctx)
	return after - before, g, err
}

// iperfResult is what the iperf3 client saw.
type iperfResult struct {
	bitsPerSecond float64
	bytes         uint64
}

// runIperf runs one iperf3 TCP test of d: the server in the app namespace,
// the client in the peer namespace, paced to bitrate (iperf3's -b) unless
// it is empty. prof, if set, profiles the capture's processes once the
// traffic flows.
func (b *bench) runIperf(ctx context.Context, d time.Duration, bitrate string, prof *profiler) (iperfResult, error) {
	server, err := startProc(procSpec{name: "iperf3 server", args: []string{
		"ip", "netns", "exec", b.topo.app, "iperf3", "--server", "--one-off", "--bind", appIP, "--forceflush"}})
	if err != nil {
		return iperfResult{}, err
	}
	defer server.stop(syscall.SIGTERM, 5*time.Second)
	if _, err := server.waitFor(ctx, regexp.MustCompile(`Server listening`), 10*time.Second); err != nil {
		return iperfResult{}, err
	}
	secs := strconv.Itoa(int(d.Round(time.Second) / time.Second))
	args := []string{"ip", "netns", "exec", b.topo.peer, "iperf3", "--client", appIP, "--time", secs, "--json"}
	if bitrate != "" {
		args = append(args, "--bitrate", bitrate)
	}
	client, err := startProc(procSpec{name: "iperf3 client", args: args})
	if err != nil {
		return iperfResult{}, err
	}
	if prof != nil {
		// A second in, the connection is at its rate.
		if err := sleep(ctx, time.Second); err != nil {
			return iperfResult{}, err
		}
		if err := prof.start(); err != nil {
			return iperfResult{}, err
		}
	}
	if err := client.wait(ctx, d+30*time.Second); err != nil {
		return iperfResult{}, client.fail("%v", err)
	}
	var report struct {
		End struct {
			SumReceived struct {
				Bytes         uint64  `json:"bytes"`
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal([]byte(client.out.text()), &report); err != nil {
		return iperfResult{}, client.fail("its JSON report: %v", err)
	}
	return iperfResult{bitsPerSecond: report.End.SumReceived.BitsPerSecond, bytes: report.End.SumReceived.Bytes}, nil
}
