package procwatch_test

import (
	"bufio"
	"errors"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/cloudfoundry/pcap-server-release/cellagent/procwatch"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// startOrphanable starts a process that is not this test's child, as a
// container's init process is not the agent's: a shell starts it in the
// background and exits. It is killed when the test ends.
func startOrphanable(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("sh", "-c", "sleep 600 </dev/null >/dev/null 2>&1 & echo $!")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	return pid
}

func waitExited(t *testing.T, w *procwatch.Watch) {
	t.Helper()
	select {
	case <-w.Exited():
	case <-time.After(30 * time.Second):
		t.Fatalf("process %d was killed, but the watch did not see it exit within 30s", w.PID())
	}
}

func TestExitOfAnotherProcessIsSeen(t *testing.T) {
	pid := startOrphanable(t)
	w, err := procwatch.Open(pid)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	select {
	case <-w.Exited():
		t.Fatal("Exited is closed while the process runs")
	default:
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitExited(t, w)
	w.Close() // twice is fine
}

// Two watches of one process both see its end; closing one leaves the
// other.
func TestWatchesAreIndependent(t *testing.T) {
	pid := startOrphanable(t)
	a, err := procwatch.Open(pid)
	if err != nil {
		t.Fatal(err)
	}
	b, err := procwatch.Open(pid)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	a.Close()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitExited(t, b)
	select {
	case <-a.Exited():
		t.Error("a closed watch reported the exit")
	default:
	}
}

// A watch of a process that has already exited (its pidfd is readable
// from the start) reports the exit at once.
func TestExitBeforeTheWaitIsSeen(t *testing.T) {
	cmd := exec.Command("sleep", "600")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	w, err := procwatch.Open(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	// Killed but not reaped: exited, and the PID still names it.
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	waitExited(t, w)
}

func TestOpenFailures(t *testing.T) {
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	// Reaped: the PID names no process (unless reused at once, which the
	// kernel avoids by handing PIDs out in order).
	if _, err := procwatch.Open(cmd.Process.Pid); !errors.Is(err, procwatch.ErrNoProcess) {
		t.Errorf("watch of a reaped process: %v, want ErrNoProcess", err)
	}
	for _, pid := range []int{0, -1} {
		if _, err := procwatch.Open(pid); err == nil || !strings.Contains(err.Error(), "not a PID") {
			t.Errorf("Open(%d): %v", pid, err)
		}
	}
}
