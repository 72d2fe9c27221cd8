package capture

/*
#cgo LDFLAGS: -lpcap
#include <stdint.h>
#include <string.h>
#include <pcap/pcap.h>

// pcs_state is one read's bookkeeping; it lives in Go memory and holds no
// pointers, so it may be handed to C.
typedef struct {
	size_t len;       // bytes of records written
	size_t cap;       // bytes the buffer holds
	size_t stop_at;   // ask libpcap to stop once len reaches this
	size_t room;      // the largest record: 16 + snaplen
	uint64_t kept;    // records written
	uint64_t want;    // write at most this many; 0 discards everything
	uint64_t over;    // read beyond want: not wanted, not lost
	uint64_t dropped; // read but no room to write: lost
	uint64_t seen;    // bytes the records of every packet read would take
	int ts_scale;     // 1 when libpcap gives nanoseconds, 1000 for microseconds
} pcs_state;

typedef struct {
	pcap_t *p;
	unsigned char *buf;
	pcs_state *st;
} pcs_call;

static inline void pcs_put32(unsigned char *o, uint32_t v) {
	o[0] = v >> 24;
	o[1] = v >> 16;
	o[2] = v >> 8;
	o[3] = v;
}

// pcs_record writes one packet as a wire record (see wire/doc.go: the
// timestamp in nanoseconds, captured and original length, big-endian,
// then the data).
static void pcs_record(u_char *user, const struct pcap_pkthdr *h, const u_char *data) {
	pcs_call *c = (pcs_call *)user;
	pcs_state *st = c->st;
	uint32_t caplen = h->caplen;
	st->seen += 16 + (uint64_t)caplen;
	if (st->kept >= st->want) {
		st->over++;
		return;
	}
	if (16 + (size_t)caplen > st->cap - st->len) {
		st->dropped++;
		return;
	}
	uint64_t ts = (uint64_t)h->ts.tv_sec * 1000000000u + (uint64_t)h->ts.tv_usec * (uint64_t)st->ts_scale;
	unsigned char *o = c->buf + st->len;
	pcs_put32(o, (uint32_t)(ts >> 32));
	pcs_put32(o + 4, (uint32_t)ts);
	pcs_put32(o + 8, caplen);
	pcs_put32(o + 12, h->len < caplen ? caplen : h->len);
	memcpy(o + 16, data, caplen);
	st->len += 16 + (size_t)caplen;
	st->kept++;
	if (st->len >= st->stop_at || st->cap - st->len < st->room || st->kept >= st->want) {
		pcap_breakloop(c->p);
	}
}

static int pcs_dispatch(pcap_t *p, unsigned char *buf, pcs_state *st, int cnt) {
	pcs_call c = { p, buf, st };
	return pcap_dispatch(p, cnt, pcs_record, (u_char *)&c);
}

static int pcs_nanos(pcap_t *p) {
	return pcap_get_tstamp_precision(p) == PCAP_TSTAMP_PRECISION_NANO;
}

// pcs_nonblock makes pcap_dispatch return at once on an empty ring.
static int pcs_nonblock(pcap_t *p) {
	char errbuf[PCAP_ERRBUF_SIZE];
	if (pcap_setnonblock(p, 1, errbuf) < 0) {
		return -1;
	}
	return pcap_getnonblock(p, errbuf);
}
*/
import "C"

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/gopacket/gopacket/pcap"
	"golang.org/x/sys/unix"

	"github.com/cloudfoundry/pcap-server-release/wire"
)

// ring reads libpcap's packet ring a batch at a time: one cgo call hands
// over many packets, written by a C callback straight into a wire batch.
// gopacket's reader costs a cgo call, a lock and a time.Time per packet,
// which is most of the agent's CPU at high packet rates; tcpdump's own
// loop is a pcap_dispatch callback too.
//
// The ring waits for packets in Go's netpoller, on a duplicate of
// libpcap's descriptor: an idle capture sleeps until the kernel hands over
// a ring block (libpcap's read timeout after its first packet), a
// deadline passes or a stop sets one, with no thread blocked in a system
// call (which would make the Go scheduler hand its processor around).
type ring struct {
	p       *C.pcap_t
	room    int // the largest record: header and snaplen
	tsScale int
	st      C.pcs_state
	file    *os.File // the duplicate, in the netpoller
	raw     syscall.RawConn
	view    *ringView // nil: the ring's layout is not the one expected
}

// dispatchCount bounds the packets of one cgo call: a call that lasts
// longer than the scheduler's monitor tick (20 µs) gets its processor
// handed to another thread.
const dispatchCount = 256

// handlePointer returns libpcap's pcap_t of a gopacket handle, which
// gopacket keeps in an unexported field. The handle stays gopacket's: it
// opens, filters, counts and closes; the ring only reads.
func handlePointer(h *pcap.Handle) (unsafe.Pointer, error) {
	f := reflect.ValueOf(h).Elem().FieldByName("cptr")
	if !f.IsValid() || f.Kind() != reflect.Pointer || f.IsNil() {
		return nil, errors.New("gopacket's pcap.Handle has no pcap_t pointer named cptr: the gopacket version changed")
	}
	return f.UnsafePointer(), nil
}

func newRing(h *pcap.Handle, snaplen, ringBytes int) (*ring, error) {
	ptr, err := handlePointer(h)
	if err != nil {
		return nil, err
	}
	p := (*C.pcap_t)(ptr)
	// gopacket asks for non-blocking reads when a timeout is set, but
	// does not check that it got them; in blocking mode an empty ring
	// would block pcap_dispatch inside cgo, and no stop could end it.
	if C.pcs_nonblock(p) != 1 {
		return nil, errors.New("libpcap cannot read this capture without blocking")
	}
	fd := int(C.pcap_get_selectable_fd(p))
	if fd < 0 {
		return nil, errors.New("libpcap has no selectable descriptor for this capture")
	}
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
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
	r := &ring{p: p, room: wire.RecordHeaderSize + snaplen, tsScale: 1000, file: file, raw: raw, view: newRingView(dup, ringBytes)}
	if C.pcs_nanos(p) != 0 {
		r.tsScale = 1
	}
	return r, nil
}

// read moves packets from libpcap into b: what libpcap holds now, up to
// dispatchCount packets, until b has grown by stopAt bytes or by want
// packets, or its buffer is full; more says libpcap may hold more.
// Packets beyond want are read and passed over (want 0 discards them
// all). A packet that finds no room, which a libpcap that heeds
// pcap_breakloop only at the end of a ring block can cause, is dropped
// and counted.
func (r *ring) read(b *wire.Batch, want uint64, stopAt int) (n readCounts, more bool, err error) {
	spare := b.Spare()
	if len(spare) == 0 {
		return readCounts{}, false, errors.New("read into a full batch")
	}
	r.st = C.pcs_state{
		cap:      C.size_t(len(spare)),
		stop_at:  C.size_t(stopAt),
		room:     C.size_t(r.room),
		want:     C.uint64_t(want),
		ts_scale: C.int(r.tsScale),
	}
	ret := C.pcs_dispatch(r.p, (*C.uchar)(unsafe.Pointer(&spare[0])), &r.st, dispatchCount)
	b.Commit(int(r.st.len), int(r.st.kept))
	n = readCounts{kept: uint64(r.st.kept), over: uint64(r.st.over), lost: uint64(r.st.dropped), bytes: int(r.st.seen)}
	if ret == C.PCAP_ERROR {
		return n, false, errors.New(C.GoString(C.pcap_geterr(r.p)))
	}
	return n, ret == dispatchCount, nil
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
			return r.view.ready() > 0
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

// close releases the duplicate and the view; the pcap handle is closed by
// its owner.
func (r *ring) close() {
	r.view.close()
	_ = r.file.Close()
}

// ringView is a second, read-only mapping of libpcap's packet ring: it
// tells how many ring blocks the kernel has handed over that the reader
// has not read yet, without a system call, so that the reader can let
// blocks gather while the traffic is light and read before the ring
// fills.
type ringView struct {
	mem       []byte
	blockSize int
	blocks    int
}

// libpcap's TPACKET_V3 ring has blocks of the smallest power of two
// (from a page) that holds a "frame" of its maximum snaplen, 262144
// bytes, and as many blocks as the buffer size needs (pcap-linux.c,
// create_ring).
const ringBlockSize = 256 << 10

// newRingView maps the ring of the packet socket fd, assumed to be
// libpcap's layout for a buffer of ringBytes. The kernel refuses a
// mapping of another size, and then there is no view (nil): the reader
// does without.
func newRingView(fd, ringBytes int) *ringView {
	blocks := (ringBytes + ringBlockSize - 1) / ringBlockSize
	mem, err := unix.Mmap(fd, 0, blocks*ringBlockSize, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil
	}
	return &ringView{mem: mem, blockSize: ringBlockSize, blocks: blocks}
}

// ready counts the blocks handed over to user space (TP_STATUS_USER in
// the block descriptor's block_status, at offset 8).
func (v *ringView) ready() int {
	n := 0
	for b := range v.blocks {
		status := (*uint32)(unsafe.Pointer(&v.mem[b*v.blockSize+8]))
		if atomic.LoadUint32(status)&unix.TP_STATUS_USER != 0 {
			n++
		}
	}
	return n
}

func (v *ringView) close() {
	if v != nil {
		_ = unix.Munmap(v.mem)
	}
}
