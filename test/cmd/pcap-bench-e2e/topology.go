package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// The addresses of the two ends, from the benchmarking range.
const (
	peerIP = "198.18.0.1"
	appIP  = "198.18.0.2"
)

// topology is the app's network namespace (eth0, appIP) joined by a veth
// to a peer namespace (peerIP) where the traffic comes from. Neither has
// IPv6 and both know the other's MAC address, so that nothing but the
// benchmark's own packets crosses the veth.
type topology struct {
	app, peer string // namespace names
	peerDev   string // the veth's end in the peer namespace
	appMAC    string
}

func ipCmd(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// newTopology creates the namespaces; on error it removes what it made.
func newTopology(ctx context.Context, app, peer string) (t *topology, err error) {
	t = &topology{app: app, peer: peer, peerDev: "bench0"}
	defer func() {
		if err != nil {
			t.remove()
		}
	}()
	for _, ns := range []string{app, peer} {
		if _, err := ipCmd(ctx, "netns", "add", ns); err != nil {
			return nil, err
		}
		if _, err := ipCmd(ctx, "netns", "exec", ns, "sysctl", "-q", "-w",
			"net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"); err != nil {
			return nil, err
		}
	}
	steps := [][]string{
		{"link", "add", t.peerDev, "netns", peer, "type", "veth", "peer", "name", "eth0", "netns", app},
		{"-n", peer, "addr", "add", peerIP + "/30", "dev", t.peerDev},
		{"-n", app, "addr", "add", appIP + "/30", "dev", "eth0"},
		{"-n", peer, "link", "set", t.peerDev, "up"},
		{"-n", app, "link", "set", "eth0", "up"},
		{"-n", peer, "link", "set", "lo", "up"},
		{"-n", app, "link", "set", "lo", "up"},
	}
	for _, s := range steps {
		if _, err := ipCmd(ctx, s...); err != nil {
			return nil, err
		}
	}
	if t.appMAC, err = linkMAC(ctx, app, "eth0"); err != nil {
		return nil, err
	}
	peerMAC, err := linkMAC(ctx, peer, t.peerDev)
	if err != nil {
		return nil, err
	}
	// No ARP on the veth: its packets would count as received.
	if _, err := ipCmd(ctx, "-n", app, "neigh", "replace", peerIP, "lladdr", peerMAC, "dev", "eth0", "nud", "permanent"); err != nil {
		return nil, err
	}
	if _, err := ipCmd(ctx, "-n", peer, "neigh", "replace", appIP, "lladdr", t.appMAC, "dev", t.peerDev, "nud", "permanent"); err != nil {
		return nil, err
	}
	return t, nil
}

// remove deletes both namespaces, and with them the veth. It runs on
// every exit, with a context of its own.
func (t *topology) remove() {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, ns := range []string{t.app, t.peer} {
		_, _ = ipCmd(ctx, "netns", "del", ns)
	}
}

// linkInfo is the part of `ip -j -s link show` the benchmark reads.
type linkInfo struct {
	Address string `json:"address"`
	Stats64 struct {
		RX struct {
			Packets uint64 `json:"packets"`
			Dropped uint64 `json:"dropped"`
		} `json:"rx"`
	} `json:"stats64"`
}

func showLink(ctx context.Context, ns, dev string) (linkInfo, error) {
	out, err := ipCmd(ctx, "-n", ns, "-j", "-s", "link", "show", "dev", dev)
	if err != nil {
		return linkInfo{}, err
	}
	var links []linkInfo
	if err := json.Unmarshal([]byte(out), &links); err != nil || len(links) != 1 {
		return linkInfo{}, errors.Join(fmt.Errorf("ip -j link show %s in %s: unexpected output %q", dev, ns, out), err)
	}
	return links[0], nil
}

func linkMAC(ctx context.Context, ns, dev string) (string, error) {
	l, err := showLink(ctx, ns, dev)
	return l.Address, err
}

// appReceived is what the app's eth0 has received so far: the veth counts
// a packet there once it is in the app namespace's receive queue, before
// any packet socket sees it, so it is what a capture can get.
func (t *topology) appReceived(ctx context.Context) (uint64, error) {
	l, err := showLink(ctx, t.app, "eth0")
	return l.Stats64.RX.Packets, err
}
