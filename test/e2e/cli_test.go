package e2e

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
)

// cli runs the built CLI standalone against the API.
func cliCmd(t *testing.T, api *apiProc, args ...string) *exec.Cmd {
	t.Helper()
	full := append([]string{"pcap", appName, "--api-url", api.url, "--token", devToken, "--app-guid", appGUID}, args...)
	cmd := exec.Command(binary(t, "pcap-server-cli"), full...)
	cmd.Env = append(os.Environ(), "PCAP_API_URL=", "PCAP_TOKEN=")
	return cmd
}

func TestCLIWritesToStdout(t *testing.T) {
	api, a := setup(t)
	cmd := cliCmd(t, api, "-o", "-", "-f", "udp", "-c", "10")
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	lines, stderr := startWatchingStderr(t, cmd)
	waitLine(t, lines, regexp.MustCompile(`^Capturing app my-app`))
	a.send(t, "stdout", 10)
	for range lines {
	}
	if err := waitCmd(t, cmd); err != nil {
		t.Fatalf("cli: %v\n%s", err, stderr.String())
	}
	file := filepath.Join(t.TempDir(), "out.pcap")
	if err := os.WriteFile(file, stdout.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if rows := tshark(t, file, "udp.payload"); len(rows) != 10 {
		t.Fatalf("%d packets on stdout", len(rows))
	}
	if !strings.Contains(stderr.String(), "10 packets") || !strings.Contains(stderr.String(), "ended: packet count reached") {
		t.Fatalf("summary: %s", stderr.String())
	}
}

// Ctrl-C in a real terminal ends like tcpdump's: the CLI shows progress,
// asks the API to stop, and the stream ends with every packet sent before
// the Ctrl-C and the trailers, so the summary states the drops by where
// they happened.
func TestCLICtrlCInTerminalLeavesValidFile(t *testing.T) {
	api, a := setup(t)
	out := filepath.Join(t.TempDir(), "cap.pcap")
	cmd := cliCmd(t, api, "-o", out, "-f", "udp", "--duration", "1m")
	tty, lines, screen := startInTerminal(t, cmd)
	waitLine(t, lines, regexp.MustCompile(`^Capturing app my-app`))
	a.send(t, "ctrl-c", 25)
	// The progress line shows the packets as they arrive.
	waitLine(t, lines, regexp.MustCompile(`25 packets .* dropped`))
	if _, err := tty.Write([]byte{3}); err != nil { // Ctrl-C through the terminal
		t.Fatal(err)
	}
	if err := waitCmd(t, cmd); err != nil {
		t.Fatalf("cli exited with %v:\n%s", err, screen.String())
	}
	summary := waitLine(t, lines, regexp.MustCompile(`packets, .* written to`))
	if !strings.Contains(summary, "25 packets") || !strings.Contains(summary, "ended: stopped on request") ||
		!strings.Contains(summary, "dropped: 0 (kernel=0 agent=0 api=0)") {
		t.Fatalf("summary %q", summary)
	}
	assertAudit(t, api, "capture", "requested")
	if rows := tshark(t, out, "udp.payload"); len(rows) != 25 {
		t.Fatalf("%d packets in the file", len(rows))
	}
}

func TestCLIFailsWithAPIMessage(t *testing.T) {
	api, _ := setup(t)
	out := filepath.Join(t.TempDir(), "never.pcap")
	cmd := cliCmd(t, api, "-o", out, "-f", "tcp port http-ish")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	if code := exitCode(err); code != 1 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "http-ish") || !strings.Contains(stderr.String(), "HTTP 400") {
		t.Fatalf("stderr %q", stderr.String())
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatal("a refused capture left a file")
	}
}

func TestCLIRefusesToOverwrite(t *testing.T) {
	api, _ := setup(t)
	out := filepath.Join(t.TempDir(), "exists.pcap")
	if err := os.WriteFile(out, []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd := cliCmd(t, api, "-o", out)
	cmd.Stderr = &stderr
	if code := exitCode(cmd.Run()); code != 1 || !strings.Contains(stderr.String(), "--force") {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if data, _ := os.ReadFile(out); string(data) != "precious" {
		t.Fatal("file overwritten")
	}
}

func TestCLIAPIDown(t *testing.T) {
	cmd := exec.Command(binary(t, "pcap-server-cli"), "pcap", "x", "--api-url", "http://127.0.0.1:1", "--token", "t", "--app-guid", "g", "-o", filepath.Join(t.TempDir(), "x.pcap"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if code := exitCode(cmd.Run()); code != 1 || !strings.Contains(stderr.String(), "cannot reach the pcap-server API at http://127.0.0.1:1") {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
}

func waitLine(t *testing.T, lines <-chan string, re *regexp.Regexp) string {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("output ended before a line matching %s", re)
			}
			if re.MatchString(l) {
				return l
			}
		case <-timeout:
			t.Fatalf("no line matching %s within 20s", re)
		}
	}
}

func waitCmd(t *testing.T, cmd *exec.Cmd) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Signal(syscall.SIGKILL)
		t.Fatal("cli did not exit within 30s")
		return nil
	}
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return -1
}

// scanLinesOrCR splits on \n and on \r, so that each redraw of the
// progress line is a token of its own; terminal escapes are dropped.
func scanLinesOrCR(data []byte, atEOF bool) (int, []byte, error) {
	for i, b := range data {
		if b == '\n' || b == '\r' {
			return i + 1, clean(data[:i]), nil
		}
	}
	if atEOF && len(data) > 0 {
		return len(data), clean(data), nil
	}
	return 0, nil, nil
}

var escapes = regexp.MustCompile(`\x1b\[[0-9;]*[A-Za-z]`)

func clean(b []byte) []byte { return escapes.ReplaceAll(bytes.Clone(b), nil) }

// cliStandalone runs the built CLI with exactly args.
func cliStandalone(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	return exec.Command(binary(t, "pcap-server-cli"), args...)
}

// startInTerminal starts cmd in a pseudo-terminal, as a user runs the CLI,
// and returns the terminal (closed when the test ends), what appears on it
// line by line (each redraw of the progress line a line of its own; the
// channel closes when the terminal does) and as a whole.
func startInTerminal(t *testing.T, cmd *exec.Cmd) (*os.File, <-chan string, *syncBuffer) {
	t.Helper()
	tty, err := pty.Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tty.Close() })
	lines := make(chan string, 100)
	screen := &syncBuffer{}
	go func() {
		sc := bufio.NewScanner(io.TeeReader(tty, screen))
		sc.Split(scanLinesOrCR)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	return tty, lines, screen
}

// startWatchingStderr starts cmd and returns its stderr line by line (the
// channel closes when stderr does) and as a whole.
func startWatchingStderr(t testing.TB, cmd *exec.Cmd) (<-chan string, *bytes.Buffer) {
	t.Helper()
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var all bytes.Buffer
	lines := make(chan string, 100)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(io.TeeReader(pipe, &all))
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	return lines, &all
}
