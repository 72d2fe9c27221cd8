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
// for): a pidfd becomes readable when the process exits.
func WaitExit(ctx context.Context, pid int) error {
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return nil // gone already
	}
	if err != nil {
		return fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	defer unix.Close(fd)
	for {
		timeout := 100 // ms: to look at ctx now and then
		if deadline, ok := ctx.Deadline(); ok {
			timeout = int(min(time.Until(deadline), 100*time.Millisecond) / time.Millisecond)
		}
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, max(timeout, 0))
		if err != nil && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("poll pidfd of %d: %w", pid, err)
		}
		if n > 0 {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("process %d still runs: %w", pid, err)
		}
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
