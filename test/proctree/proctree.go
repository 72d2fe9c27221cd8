// Package proctree walks a process's live descendants in /proc, for tests
// that wait for a child a process starts (a filter compiler) without
// knowing which of its threads starts it.
package proctree

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Children returns the pids of pid's live children, gathered from every
// thread's list (a child belongs to the thread that forked it).
func Children(pid int) []int {
	var pids []int
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, task := range tasks {
		children, err := os.ReadFile(task)
		if err != nil {
			continue // the thread ended
		}
		for _, c := range strings.Fields(string(children)) {
			if child, err := strconv.Atoi(c); err == nil {
				pids = append(pids, child)
			}
		}
	}
	return pids
}

// AwaitCommand returns the pid of a live descendant of pid that has arg
// among its command line's arguments, once there is one, or ctx's error.
// A child is found only once it has exec'd: until then it has its
// parent's command line. /proc has no event for a new process, so this
// polls every 5 ms.
func AwaitCommand(ctx context.Context, pid int, arg string) (int, error) {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		if found := WithArg(pid, arg); len(found) > 0 {
			return found[0], nil
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("no descendant of process %d runs with %q: %w", pid, arg, ctx.Err())
		case <-t.C:
		}
	}
}

// WithArg returns the pids of pid's live descendants that have arg among
// their command line's arguments.
func WithArg(pid int, arg string) []int {
	var found []int
	for _, child := range Children(pid) {
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", child))
		if err == nil && slices.Contains(strings.Split(string(cmdline), "\x00"), arg) {
			found = append(found, child)
		}
		found = append(found, WithArg(child, arg)...)
	}
	return found
}
