// Package cputime reads how much CPU a process and its live descendants
// have used, from /proc: tests use it to wait until a process is busy
// with something (a compile) without knowing which thread or child does it.
package cputime

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTick is USER_HZ, 100 on every Linux architecture Go supports.
const clockTick = 10 * time.Millisecond

// Tree is the user plus system time of pid and every live descendant.
func Tree(pid int) (time.Duration, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces; fields restart after its ')'.
	s := string(stat)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(fields))
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad utime or stime", pid)
	}
	total := time.Duration(utime+stime) * clockTick
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, task := range tasks {
		children, err := os.ReadFile(task)
		if err != nil {
			continue // the thread ended
		}
		for _, c := range strings.Fields(string(children)) {
			child, err := strconv.Atoi(c)
			if err != nil {
				continue
			}
			if d, err := Tree(child); err == nil {
				total += d
			}
		}
	}
	return total, nil
}

// Await returns once pid and its descendants have used busy more CPU than
// before, polling every 10 ms, or ctx's error.
func Await(ctx context.Context, pid int, before, busy time.Duration) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		used, err := Tree(pid)
		if err != nil {
			return err
		}
		if used-before >= busy {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("process %d used %s of CPU, not %s: %w", pid, used-before, busy, ctx.Err())
		case <-t.C:
		}
	}
}
