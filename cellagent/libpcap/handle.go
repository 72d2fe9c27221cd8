// Package libpcap is the agent's own handle on libpcap: a small cgo layer
// that creates, configures and activates a live capture, sets a compiled
// filter, reads the packet ring a batch at a time into wire records
// (dispatch.go), counts, and closes.
//
// The agent owns every pcap_t it opens here and nothing else touches it:
// a Handle's libpcap calls are serialised by the handle itself, so Close
// from any goroutine waits for a running Dispatch to return instead of
// freeing the pcap_t under it (gopacket's Handle.Close assumes its
// readers take its lock, which a batch reader beside it cannot).
package libpcap

/*
#cgo LDFLAGS: -lpcap
#include <stdlib.h>
#include <pcap/pcap.h>

// pcs_configure sets what a capture needs before activation and returns
// the failing call's status, 0 when all took.
static int pcs_configure(pcap_t *p, int snaplen, int timeout_ms, int buffer_bytes, char *errbuf) {
	int st;
	if ((st = pcap_set_snaplen(p, snaplen)) != 0) return st;
	if ((st = pcap_set_promisc(p, 0)) != 0) return st;
	if ((st = pcap_set_timeout(p, timeout_ms)) != 0) return st;
	if ((st = pcap_set_buffer_size(p, buffer_bytes)) != 0) return st;
	// Immediate mode would force TPACKET_V2 and halve the packet rate.
	if ((st = pcap_set_immediate_mode(p, 0)) != 0) return st;
	// Not every kernel stamps in nanoseconds: Open asks what it got.
	(void)pcap_set_tstamp_precision(p, PCAP_TSTAMP_PRECISION_NANO);
	// Non-blocking from the start: pcap_dispatch returns at once on an
	// empty ring (the reader waits in Go's netpoller), and libpcap opens
	// no eventfd for breaking a blocking read.
	if (pcap_setnonblock(p, 1, errbuf) != 0) return PCAP_ERROR;
	return 0;
}

// pcs_setfilter installs a compiled program of n instructions.
static int pcs_setfilter(pcap_t *p, struct bpf_insn *insns, int n) {
	struct bpf_program prog = { (u_int)n, insns };
	return pcap_setfilter(p, &prog);
}
*/
import "C"

import (
	"errors"
	"fmt"
	"sync"
	"time"
	"unsafe"

	"github.com/cloudfoundry/pcap-server-release/wire"
)

// Config is a live capture to open.
type Config struct {
	// Device is the interface, in the calling thread's network namespace.
	Device  string
	Snaplen int
	// BufferBytes is the kernel ring's size.
	BufferBytes int
	// Timeout is libpcap's packet buffer timeout: a ring block is handed
	// over when full or this long after its first packet.
	Timeout time.Duration
}

// ErrClosed is a call on a closed Handle.
var ErrClosed = errors.New("libpcap handle closed")

// ActivateError is pcap_activate failing.
type ActivateError struct {
	Device string
	// Status is libpcap's PCAP_ERROR_* code.
	Status int
	// Msg is libpcap's text.
	Msg string
}

func (e *ActivateError) Error() string {
	return fmt.Sprintf("activate capture on %s: %s", e.Device, e.Msg)
}

// DeviceUnusable says whether the device is missing or down, rather than
// libpcap or the system failing.
func (e *ActivateError) DeviceUnusable() bool {
	return e.Status == C.PCAP_ERROR_NO_SUCH_DEVICE || e.Status == C.PCAP_ERROR_IFACE_NOT_UP
}

// Stats are libpcap's counters since activation.
type Stats struct {
	// Received counts what the kernel passed the filter, dropped or not.
	Received uint64
	// Dropped counts what the kernel dropped for a full ring.
	Dropped uint64
	// IfDropped counts what the interface dropped.
	IfDropped uint64
}

// Handle is an activated, non-blocking capture.
type Handle struct {
	// mu serialises the libpcap calls and Close.
	mu sync.Mutex
	p  *C.pcap_t // nil once closed

	linkType int
	snaplen  int
	// tsScale turns libpcap's sub-second stamp into nanoseconds.
	tsScale int
	fd      int
	// d is Dispatch's bookkeeping, here so that no call allocates it.
	d dispatchState
}

// Open creates, configures and activates a capture of cfg.Device in the
// calling thread's network namespace, where its packet socket stays.
func Open(cfg Config) (*Handle, error) {
	dev := C.CString(cfg.Device)
	defer C.free(unsafe.Pointer(dev))
	errbuf := (*C.char)(C.calloc(C.PCAP_ERRBUF_SIZE, 1))
	defer C.free(unsafe.Pointer(errbuf))
	p := C.pcap_create(dev, errbuf)
	if p == nil {
		return nil, fmt.Errorf("create capture on %s: %s", cfg.Device, C.GoString(errbuf))
	}
	timeout := max(cfg.Timeout.Milliseconds(), 1)
	if st := C.pcs_configure(p, C.int(cfg.Snaplen), C.int(timeout), C.int(cfg.BufferBytes), errbuf); st != 0 {
		msg := C.GoString(errbuf)
		if st != C.PCAP_ERROR || msg == "" {
			msg = C.GoString(C.pcap_statustostr(st))
		}
		C.pcap_close(p)
		return nil, fmt.Errorf("configure capture on %s: %s", cfg.Device, msg)
	}
	st, err := activate(p)
	if st < 0 {
		msg := C.GoString(C.pcap_statustostr(st))
		if detail := C.GoString(C.pcap_geterr(p)); detail != "" && detail != msg {
			msg += ": " + detail
		}
		err = &ActivateError{Device: cfg.Device, Status: int(st), Msg: msg}
	}
	if err != nil {
		C.pcap_close(p)
		return nil, err
	}
	h := &Handle{
		p:        p,
		linkType: int(C.pcap_datalink(p)),
		snaplen:  int(C.pcap_snapshot(p)),
		tsScale:  1000,
		fd:       int(C.pcap_get_selectable_fd(p)),
	}
	if C.pcap_get_tstamp_precision(p) == C.PCAP_TSTAMP_PRECISION_NANO {
		h.tsScale = 1
	}
	switch {
	case C.pcap_getnonblock(p, errbuf) != 1:
		// A blocking pcap_dispatch on an empty ring would hold its
		// thread in cgo, and no stop could end it.
		h.Close()
		return nil, fmt.Errorf("capture on %s: libpcap cannot read it without blocking", cfg.Device)
	case h.fd < 0:
		h.Close()
		return nil, fmt.Errorf("capture on %s: libpcap has no selectable descriptor for it", cfg.Device)
	}
	return h, nil
}

// LinkType is the capture's DLT.
func (h *Handle) LinkType() int { return h.linkType }

// Snaplen is the most bytes of a packet the capture keeps.
func (h *Handle) Snaplen() int { return h.snaplen }

// RecordRoom is the most bytes one packet's wire record takes.
func (h *Handle) RecordRoom() int { return wire.RecordHeaderSize + h.snaplen }

// SelectableFD is libpcap's descriptor that becomes readable when the
// kernel hands over a ring block. It belongs to the handle: wait on a
// duplicate, which outlives Close harmlessly.
func (h *Handle) SelectableFD() int { return h.fd }

// Instruction is one BPF instruction of a compiled filter.
type Instruction struct {
	Code   uint16
	Jt, Jf uint8
	K      uint32
}

// SetFilter installs a compiled program. libpcap also filters in user
// space what reached the ring before, so no unfiltered packet is read.
func (h *Handle) SetFilter(insns []Instruction) error {
	if len(insns) == 0 {
		return errors.New("set filter: empty program")
	}
	prog := (*C.struct_bpf_insn)(C.calloc(C.size_t(len(insns)), C.size_t(unsafe.Sizeof(C.struct_bpf_insn{}))))
	defer C.free(unsafe.Pointer(prog))
	cinsns := unsafe.Slice(prog, len(insns))
	for i, in := range insns {
		cinsns[i] = C.struct_bpf_insn{code: C.u_short(in.Code), jt: C.u_char(in.Jt), jf: C.u_char(in.Jf), k: C.bpf_u_int32(in.K)}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.p == nil {
		return ErrClosed
	}
	if C.pcs_setfilter(h.p, prog, C.int(len(insns))) < 0 {
		return fmt.Errorf("set filter: %s", C.GoString(C.pcap_geterr(h.p)))
	}
	return nil
}

// Stats reads libpcap's counters.
func (h *Handle) Stats() (Stats, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.p == nil {
		return Stats{}, ErrClosed
	}
	var s C.struct_pcap_stat
	if C.pcap_stats(h.p, &s) < 0 {
		return Stats{}, fmt.Errorf("read capture counters: %s", C.GoString(C.pcap_geterr(h.p)))
	}
	return Stats{Received: uint64(s.ps_recv), Dropped: uint64(s.ps_drop), IfDropped: uint64(s.ps_ifdrop)}, nil
}

// Close releases the capture: its packet socket and ring. It waits for a
// Dispatch in progress, which returns within one dispatch's packets (the
// handle never blocks). Later calls get ErrClosed; Close again does
// nothing.
func (h *Handle) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.p != nil {
		C.pcap_close(h.p)
		h.p = nil
	}
}
