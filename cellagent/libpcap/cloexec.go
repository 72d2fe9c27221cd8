package libpcap

/*
#include <pcap/pcap.h>
*/
import "C"

import (
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// activate runs pcap_activate and marks the packet socket it opens
// close-on-exec, with no process forked in between: libpcap opens it
// without the flag, and a child exec'd meanwhile (a filter compiler)
// would hold the socket, and its kernel ring, for as long as it lives,
// also after the capture has been closed. os/exec forks holding
// syscall.ForkLock for writing; it is held here for reading. (The
// compiler child also closes whatever it inherits first thing; this
// keeps the socket out of any other child as well.) Being non-blocking
// from the start, the handle has no other descriptor.
func activate(p *C.pcap_t) (status C.int, err error) {
	syscall.ForkLock.RLock()
	defer syscall.ForkLock.RUnlock()
	status = C.pcap_activate(p)
	if status < 0 {
		return status, nil
	}
	if fd := C.pcap_fileno(p); fd >= 0 {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC); err != nil {
			return status, fmt.Errorf("mark the capture's socket close-on-exec: %w", err)
		}
	}
	return status, nil
}
