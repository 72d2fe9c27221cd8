// Package procmem reads a process's resident memory from /proc, now and
// at its peak, for the tests and benchmarks that measure a real process.
package procmem

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Usage is a process's resident memory in bytes.
type Usage struct {
	// RSS is what it holds now (VmRSS), Peak the most it has held
	// (VmHWM, the high-water mark).
	RSS, Peak int64
}

// Read reads pid's resident memory.
func Read(pid int) (Usage, error) {
	var u Usage
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return u, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		for key, dst := range map[string]*int64{"VmRSS:": &u.RSS, "VmHWM:": &u.Peak} {
			if v, ok := strings.CutPrefix(line, key); ok {
				kib, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				if err != nil {
					return u, fmt.Errorf("/proc/%d/status: %s %q: %w", pid, key, v, err)
				}
				*dst = kib << 10
			}
		}
	}
	return u, nil
}
