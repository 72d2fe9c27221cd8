package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cloudfoundry/pcap-server-release/proxy/apiconfig"
	"github.com/cloudfoundry/pcap-server-release/test/netnstest"
)

// A stop (Ctrl-C) while the agent is frozen past the API's stop timeout:
// the agent's final counters never come, so the drops are unknown. The
// file keeps every packet that arrived, and the summary says the drops
// are at least what is known and whose counts are missing, never a plain
// "dropped: 0".
func TestStopWhileTheAgentIsFrozen(t *testing.T) {
	netnstest.RequireRoot(t)
	p := newPKI(t)
	a := newApp(t)
	// The default keep-alive: the stop timeout (15 s) passes before the
	// API gives the silent session up (15 s + 5 s).
	api := startAPI(t, p, oneInstance("127.0.0.1"), func(c *apiconfig.Config) {
		c.Tunnel.KeepaliveInterval = configDuration(10 * time.Second)
	})
	agent := startAgentProcess(t, p, api, "127.0.0.1", map[string]string{appGUID + "/0": a.pair.App.Path()})
	// Runs before the agent's own cleanup kills it.
	t.Cleanup(func() { _ = agent.Process.Signal(syscall.SIGCONT) })

	out := filepath.Join(t.TempDir(), "frozen.pcap")
	cmd := cliCmd(t, api, "-o", out, "-f", "udp", "--duration", "2m")
	lines, stderr := startWatchingStderr(t, cmd)
	waitLine(t, lines, regexp.MustCompile(`^Capturing app my-app`))
	a.send(t, "before-freeze", 20)
	waitFileSize(t, out, 24+20*(16+42+len(payload("before-freeze", 0))))

	if err := agent.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	a.send(t, "while-frozen", 30)
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	for range lines {
	}
	if err := waitCmd(t, cmd); err != nil {
		t.Fatalf("cli: %v\n%s", err, stderr.String())
	}
	text := stderr.String()
	for _, want := range []string{
		"20 packets",
		"dropped: ≥0 (kernel=0 agent=0 api=0; instance 0's counts unknown: its agent did not answer the stop within 15s)",
		"ended: stopped on request",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("summary lacks %q:\n%s", want, text)
		}
	}
	if rows := tshark(t, out, "udp.payload"); len(rows) != 20 {
		t.Errorf("%d packets in the file, want the 20 sent before the freeze", len(rows))
	}
	data, err := os.ReadFile(api.audit)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), `"counts_unknown":"0: its agent did not answer the stop within 15s"`) {
		t.Errorf("the audit line does not say the counts are unknown:\n%s", data)
	}
}

// waitFileSize waits until the file has at least n bytes: the CLI has
// written what arrived. It polls for at most 20 seconds.
func waitFileSize(t *testing.T, path string, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if fi, err := os.Stat(path); err == nil && fi.Size() >= int64(n) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not reach %d bytes within 20s", path, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
