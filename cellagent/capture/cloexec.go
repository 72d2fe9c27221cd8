package capture

import (
	"fmt"
	"os"
	"strconv"
	"syscall"
)

// closeOnExec runs open and marks every file descriptor that appeared
// meanwhile close-on-exec. libpcap opens its packet socket (and, in
// blocking mode, an eventfd) without it, so every filter compiler child
// forked later would hold the capture's socket, and its kernel ring,
// until it exits, also after the capture has been closed. No process is
// forked in between: os/exec forks holding syscall.ForkLock for writing,
// held here for reading. Descriptors other goroutines open meanwhile are
// marked too, which changes nothing for them (Go opens every descriptor
// close-on-exec, and hands those a child must inherit over by dup2).
// open must not fork.
func closeOnExec(open func() error) error {
	syscall.ForkLock.RLock()
	defer syscall.ForkLock.RUnlock()
	before, err := openDescriptors()
	if err != nil {
		return err
	}
	openErr := open()
	after, err := openDescriptors()
	if err != nil {
		// open's descriptors cannot be found: the caller closes them.
		return err
	}
	for fd := range after {
		if !before[fd] {
			syscall.CloseOnExec(fd)
		}
	}
	return openErr
}

// openDescriptors lists the process's open file descriptors.
func openDescriptors() (map[int]bool, error) {
	dir, err := os.Open("/proc/self/fd")
	if err != nil {
		return nil, fmt.Errorf("list open file descriptors: %w", err)
	}
	defer dir.Close()
	names, err := dir.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("list open file descriptors: %w", err)
	}
	fds := make(map[int]bool, len(names))
	for _, n := range names {
		if fd, err := strconv.Atoi(n); err == nil {
			fds[fd] = true
		}
	}
	// The listing's own descriptor is closed at once: open may get its
	// number.
	delete(fds, int(dir.Fd()))
	return fds, nil
}
