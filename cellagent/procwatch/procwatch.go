// Package procwatch tells when a process exits that is not the agent's
// child, such as a container's init process.
//
// It holds a pidfd (pidfd_open(2)) of the process, which turns readable
// when the process exits, and waits for that in Go's netpoller like for a
// socket: no thread blocks, nothing polls, and the wait costs nothing
// until the process exits. The pidfd names the process itself, not its
// PID, so a PID reused later is never mistaken for it; a PID reused before
// Open is the caller's to rule out (by the process's start time).
package procwatch

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ErrNoProcess is returned by Open when no process has the PID.
var ErrNoProcess = errors.New("no such process")

// Watch watches one process.
type Watch struct {
	pid    int
	file   *os.File
	exited chan struct{}
	done   chan struct{} // closed when the waiting goroutine has ended
}

// Open starts watching the process pid. Close ends the watch.
func Open(pid int) (*Watch, error) {
	if pid <= 0 {
		return nil, fmt.Errorf("watch process %d: not a PID", pid)
	}
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if errors.Is(err, unix.ESRCH) {
		return nil, fmt.Errorf("watch process %d: %w", pid, ErrNoProcess)
	}
	if err != nil {
		return nil, fmt.Errorf("watch process %d: pidfd_open: %w", pid, err)
	}
	// Non-blocking, the pidfd goes into the netpoller.
	file := os.NewFile(uintptr(fd), fmt.Sprintf("pidfd of process %d", pid))
	raw, err := file.SyscallConn()
	if err == nil {
		err = file.SetReadDeadline(time.Time{}) // fails unless in the netpoller
	}
	if err != nil {
		file.Close()
		return nil, fmt.Errorf("watch process %d: wait for its pidfd: %w", pid, err)
	}
	w := &Watch{pid: pid, file: file, exited: make(chan struct{}), done: make(chan struct{})}
	go w.wait(raw)
	return w, nil
}

// wait closes exited once the pidfd is readable: the process has exited.
// It ends without closing exited when Close closes the pidfd.
func (w *Watch) wait(raw syscall.RawConn) {
	defer close(w.done)
	err := raw.Read(func(fd uintptr) bool {
		// The netpoller wakes for readiness that may predate this wait
		// or be spurious: ask the pidfd itself.
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		for {
			n, err := unix.Poll(fds, 0)
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return err == nil && n > 0
		}
	})
	if err == nil {
		close(w.exited)
	}
}

// PID is the watched process's PID.
func (w *Watch) PID() int { return w.pid }

// Exited is closed once the process has exited.
func (w *Watch) Exited() <-chan struct{} { return w.exited }

// Close ends the watch and releases the pidfd. Exited may then never
// close. Close is safe to call more than once.
func (w *Watch) Close() {
	_ = w.file.Close()
	<-w.done
}
