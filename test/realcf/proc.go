package realcf

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cloudfoundry/pcap-server-release/cellagent/procwatch"
)

// pidsWhere lists the processes, other than this one, for which match,
// given the process's /proc folder, says yes.
func pidsWhere(match func(dir string) bool) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err == nil && pid != os.Getpid() && match(filepath.Join("/proc", e.Name())) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// pidsRunning lists the processes whose executable matches.
func pidsRunning(match func(exe string) bool) []int {
	return pidsWhere(func(dir string) bool {
		exe, err := os.Readlink(filepath.Join(dir, "exe"))
		return err == nil && match(exe)
	})
}

// pidsWithEnv lists the processes whose environment holds kv.
func pidsWithEnv(kv string) []int {
	return pidsWhere(func(dir string) bool {
		env, err := os.ReadFile(filepath.Join(dir, "environ"))
		return err == nil && slices.Contains(strings.Split(string(env), "\x00"), kv)
	})
}

// WaitExit waits until the process pid has exited, whoever its parent is
// (an orphaned plugin is not the test's child, so it cannot be waited
// for): through its pidfd.
func WaitExit(ctx context.Context, pid int) error {
	w, err := procwatch.Open(pid)
	if errors.Is(err, procwatch.ErrNoProcess) {
		return nil // gone already
	}
	if err != nil {
		return err
	}
	defer w.Close()
	select {
	case <-w.Exited():
		return nil
	case <-ctx.Done():
		return fmt.Errorf("process %d still runs: %w", pid, ctx.Err())
	}
}

// KillAll kills the processes by pid and waits until they are gone.
func KillAll(tb testing.TB, pids []int) {
	for _, pid := range pids {
		_ = unix.Kill(pid, unix.SIGKILL)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := WaitExit(ctx, pid); err != nil {
			tb.Errorf("kill %d: %v", pid, err)
		}
		cancel()
	}
}
