package boshrelease

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// eventReader reads the lines a fake daemon writes into a FIFO.
type eventReader struct {
	lines chan string
}

func newEventFIFO(t *testing.T) (string, *eventReader) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "events")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	// O_RDWR keeps the FIFO open for reading without waiting for a writer,
	// and keeps it from reporting EOF between writers.
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	r := &eventReader{lines: make(chan string, 16)}
	go func() {
		defer close(r.lines)
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			r.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() { f.Close() })
	return path, r
}

func (r *eventReader) next(t *testing.T) string {
	t.Helper()
	select {
	case line, ok := <-r.lines:
		if !ok {
			t.Fatal("event FIFO closed")
		}
		return line
	case <-time.After(deadline(t)):
		t.Fatal("no event from the fake daemon")
		return ""
	}
}

// TestAgentCtlStartsAndStops runs the rendered bin/ctl as monit would,
// with a stand-in binary where the agent's package puts pcap-server.
func TestAgentCtlStartsAndStops(t *testing.T) {
	r := mustRenderJob(t, "pcap-server", agentProperties(newTestPKI(t)))
	bin := filepath.Join(r.root, "packages/pcap-server/bin/pcap-server")
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := copyFile(binary(t, "fakedaemon"), bin, 0o755); err != nil {
		t.Fatal(err)
	}
	fifo, events := newEventFIFO(t)
	ctl := r.path("bin/ctl")
	pidfile := filepath.Join(r.root, "sys/run/pcap-server/pid")
	env := append(os.Environ(), "FAKE_EVENTS="+fifo)

	start := exec.Command(ctl, "start")
	start.Env = env
	if err := start.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- start.Wait() }()

	want := fmt.Sprintf("started %d -config %s", start.Process.Pid, r.path("config/pcap-server.yml"))
	if got := events.next(t); got != want {
		t.Fatalf("fake daemon says %q, want %q (ctl execs the binary in its own process)", got, want)
	}
	if pid := strings.TrimSpace(readFile(t, pidfile)); pid != strconv.Itoa(start.Process.Pid) {
		t.Errorf("pid file holds %q, want %d", pid, start.Process.Pid)
	}

	// monit starting it again while it runs must not start a second one.
	again := exec.Command(ctl, "start")
	again.Env = env
	if out, err := again.CombinedOutput(); err != nil {
		t.Fatalf("second start: %v: %s", err, out)
	}
	if log := readFile(t, filepath.Join(r.root, "sys/log/pcap-server/ctl.log")); !strings.Contains(log, fmt.Sprintf("already runs as %d", start.Process.Pid)) {
		t.Errorf("ctl.log after a second start: %q", log)
	}

	if out, err := exec.Command(ctl, "stop").CombinedOutput(); err != nil {
		t.Fatalf("stop: %v: %s", err, out)
	}
	if got := events.next(t); got != "term" {
		t.Errorf("fake daemon says %q after stop, want term", got)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("daemon exit: %v", err)
		}
	case <-time.After(deadline(t)):
		t.Fatal("ctl stop returned but the daemon still runs")
	}
	if fileExists(pidfile) {
		t.Error("ctl stop left the pid file")
	}
	// Stopping what is not running is fine (monit may do it).
	if out, err := exec.Command(ctl, "stop").CombinedOutput(); err != nil {
		t.Errorf("second stop: %v: %s", err, out)
	}
}

// TestAPIDrainAndRouteHealthCheck starts the real API from the rendered
// configuration, as bpm would, then runs the rendered route health check
// and drain script against it.
func TestAPIDrainAndRouteHealthCheck(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed; the route health check uses it")
	}
	p := newTestPKI(t)
	props := setDotted(setDotted(apiProperties(p), "log_level", "info"), "route_unregister_wait", "2s")
	for _, key := range []string{"listen.address", "tunnel.address", "metrics.address"} {
		props = setDotted(props, key, freeAddress(t))
	}
	r := mustRenderJob(t, "pcap-server-api", props)

	// A monit that records what it is asked.
	monitLog := filepath.Join(r.root, "monit.log")
	monit := fmt.Sprintf("#!/bin/sh\necho \"$@\" >>%s\n", monitLog)
	if err := os.WriteFile(filepath.Join(r.root, "bosh/bin/monit"), []byte(monit), 0o755); err != nil {
		t.Fatal(err)
	}
	health := r.path("bin/route_health_check")
	drain := r.path("bin/drain")
	pidfile := filepath.Join(r.root, "sys/run/bpm/pcap-server-api/pcap-server-api.pid")

	// Nothing runs yet: the health check fails, drain has nothing to wait for.
	if err := exec.Command(health).Run(); err == nil {
		t.Error("health check passes with no API running")
	}
	if out := runDrain(t, drain); out != "0\n" {
		t.Errorf("drain without a process printed %q, want 0", out)
	}

	ctx, cancel := context.WithTimeout(context.Background(), deadline(t))
	defer cancel()
	api := startAPI(t, ctx, binary(t, "pcap-server-api"), r.path(configFile("pcap-server-api")))
	if out, err := exec.Command(health).CombinedOutput(); err != nil {
		t.Errorf("health check against the running API: %v: %s", err, out)
	}

	if err := os.WriteFile(pidfile, []byte(strconv.Itoa(api.cmd.Process.Pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	drained := make(chan string, 1)
	go func() { drained <- runDrainOutput(drain, "job_shutting_down", "hash_unchanged") }()
	// First the router is left: the health check fails while the API
	// still runs.
	left := false
	for range 40 {
		if exec.Command(health).Run() != nil {
			left = true
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	select {
	case <-api.exited:
		t.Error("the API exited before the route health check failed")
	default:
		if !left {
			t.Error("the route health check still passes during the drain")
		}
	}
	if out := <-drained; out != "0\n" {
		t.Errorf("drain printed %q, want just 0", out)
	}
	// drain returns once the API has exited (and been reaped, which this
	// test's Wait does right away).
	select {
	case <-api.exited:
	case <-time.After(5 * time.Second):
		t.Error("drain returned while the API still runs")
		<-api.exited
	}
	if fileExists(pidfile) {
		t.Error("drain ended the API but left bpm's pid file")
	}
	if got := readFile(t, monitLog); got != "unmonitor pcap-server-api\n" {
		t.Errorf("monit was asked %q, want unmonitor pcap-server-api", got)
	}
	if !strings.Contains(api.logText(), "draining captures") {
		t.Errorf("the API did not drain:\n%s", api.logText())
	}
	if err := exec.Command(health).Run(); err == nil {
		t.Error("health check passes after the API stopped")
	}
	if log := readFile(t, filepath.Join(r.root, "sys/log/pcap-server-api/drain.log")); !strings.Contains(log, "drained and exited") {
		t.Errorf("drain.log: %q", log)
	}
}

// runDrainOutput is runDrain for a goroutine: errors are in the output.
func runDrainOutput(drain string, args ...string) string {
	out, err := exec.Command(drain, args...).Output()
	if err != nil {
		return fmt.Sprintf("drain: %v: %s", err, out)
	}
	return string(out)
}

// runDrain runs the drain script and returns its stdout, which BOSH reads.
func runDrain(t *testing.T, drain string, args ...string) string {
	t.Helper()
	cmd := exec.Command(drain, args...)
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	if err := cmd.Run(); err != nil {
		t.Fatalf("drain: %v", err)
	}
	return stdout.String()
}

func freeAddress(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func copyFile(src, dst string, mode os.FileMode) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return os.WriteFile(dst, data, mode)
}
