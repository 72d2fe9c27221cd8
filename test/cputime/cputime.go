// Package cputime reads how much CPU a process and its live descendants
// have used, from /proc: the benchmarks use it to tell what a process
// cost without knowing which thread or child did the work.
package cputime

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/cloudfoundry/pcap-server-release/test/proctree"
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
	for _, child := range proctree.Children(pid) {
		if d, err := Tree(child); err == nil {
			total += d
		}
	}
	return total, nil
}
