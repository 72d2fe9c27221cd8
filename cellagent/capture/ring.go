package capture

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cloudfoundry/pcap-server-release/cellagent/libpcap"
	"github.com/cloudfoundry/pcap-server-release/wire"
)

// ring reads libpcap's packet ring a batch at a time: one Dispatch hands
// over many packets, written straight into a wire batch (see
// cellagent/libpcap).
//
// The ring waits for packets in Go's netpoller, on a duplicate of
// libpcap's descriptor: an idle capture sleeps until the kernel hands over
// a ring block (libpcap's read timeout after its first packet), a
// deadline passes or a stop sets one, with no thread blocked in a system
// call (which would make the Go scheduler hand its processor around).
type ring struct {
	h    *libpcap.Handle
	room int      // the largest record: header and snaplen
	file *os.File // the duplicate, in the netpoller
	raw  syscall.RawConn
	view *libpcap.RingView // nil: the ring's layout is not the one expected
}

func newRing(h *libpcap.Handle, ringBytes int) (*ring, error) {
	dup, err := unix.FcntlInt(uintptr(h.SelectableFD()), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("duplicate the capture's descriptor: %w", err)
	}
	// O_NONBLOCK puts the duplicate in the netpoller. libpcap shares the
	// flag and never reads the socket in ring mode, only polls it.
	if err := unix.SetNonblock(dup, true); err != nil {
		unix.Close(dup)
		return nil, fmt.Errorf("make the capture's descriptor non-blocking: %w", err)
	}
	file := os.NewFile(uintptr(dup), "pcap")
	raw, err := file.SyscallConn()
	if err == nil {
		err = file.SetReadDeadline(time.Time{}) // fails unless in the netpoller
	}
	if err != nil {
		file.Close()
		return nil, fmt.Errorf("wait for the capture's descriptor: %w", err)
	}
	return &ring{h: h, room: h.RecordRoom(), file: file, raw: raw, view: libpcap.MapRing(dup, ringBytes)}, nil
}

// read moves packets from libpcap into b (libpcap.Handle.Dispatch): what
// libpcap holds now, until b has grown by stopAt bytes or by want
// packets, or its buffer is full; more says libpcap may hold more.
func (r *ring) read(b *wire.Batch, want uint64, stopAt int) (n readCounts, more bool, err error) {
	spare := b.Spare()
	if len(spare) == 0 {
		return readCounts{}, false, errors.New("read into a full batch")
	}
	recs, more, err := r.h.Dispatch(spare, want, stopAt)
	b.Commit(recs.Len, int(recs.Kept))
	return readCounts{kept: recs.Kept, over: recs.Over, lost: recs.Lost, bytes: recs.Seen}, more, err
}

// readCounts are the packets of one read: written, passed over beyond
// want, and lost for want of room; and the bytes their records take,
// whatever became of them.
type readCounts struct {
	kept, over, lost uint64
	bytes            int
}

// wait sleeps until libpcap may have packets, deadline passes, or wakeUp
// is called. stopped is asked after the deadline is set, so that a wakeUp
// racing with the wait cannot be lost.
func (r *ring) wait(deadline time.Time, stopped func() bool) {
	_ = r.file.SetReadDeadline(deadline)
	if stopped() {
		return
	}
	first := true
	_ = r.raw.Read(func(fd uintptr) bool {
		if !first {
			// Woken: readable, or an error libpcap reports.
			return true
		}
		first = false
		// The netpoller is edge-triggered and forgets what it saw
		// before this wait: a ring block handed over since the last
		// read would not wake it. The view tells without a system call
		// (which would also wake the scheduler's monitor); else ask the
		// socket itself.
		if r.view != nil {
			return r.view.Ready() > 0
		}
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 0)
		return err == nil && n > 0
	})
}

// waitHandOver sleeps until the kernel hands over a ring block from now
// on (a block handed over before is not waited for: the caller has seen
// it in the view), deadline passes, or wakeUp is called.
func (r *ring) waitHandOver(deadline time.Time, stopped func() bool) {
	_ = r.file.SetReadDeadline(deadline)
	if stopped() {
		return
	}
	first := true
	_ = r.raw.Read(func(uintptr) bool {
		done := !first
		first = false
		return done
	})
}

// wakeUp ends a wait; safe from any goroutine, also after close.
func (r *ring) wakeUp() {
	_ = r.file.SetReadDeadline(time.Now())
}

// close releases the duplicate and the view; the handle is closed by
// its owner, the reader loop.
func (r *ring) close() {
	r.view.Close()
	_ = r.file.Close()
}
