package libpcap

/*
#include <stdint.h>
#include <string.h>
#include <pcap/pcap.h>

// pcs_state is one dispatch's bookkeeping; it lives in Go memory and
// holds no pointers, so it may be handed to C.
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
*/
import "C"

import (
	"errors"
	"unsafe"

	"github.com/cloudfoundry/pcap-server-release/wire"
)

// The C callback writes the record layout of wire/doc.go.
const _ = -uint(wire.RecordHeaderSize - 16) // fails to compile unless 16

// DispatchCount bounds the packets of one Dispatch, one cgo call: a call
// that lasts longer than the Go scheduler's monitor tick (20 µs) gets its
// processor handed to another thread.
const DispatchCount = 256

// dispatchState is Dispatch's bookkeeping, kept in the Handle.
type dispatchState struct{ st C.pcs_state }

// Records are what one Dispatch read.
type Records struct {
	// Len is the bytes of records written at the start of the buffer.
	Len int
	// Kept is the records written.
	Kept uint64
	// Over is the packets read beyond want and passed over: not wanted,
	// not lost.
	Over uint64
	// Lost is the packets read that found no room in the buffer.
	Lost uint64
	// Seen is the bytes the records of every packet read would take,
	// whatever became of them.
	Seen int
}

// Dispatch moves packets from libpcap into buf as wire records, in one
// cgo call: a C callback under pcap_dispatch writes each record, so the
// packets cost no cgo call, lock or allocation of their own (gopacket's
// reader costs all three per packet, most of the agent's CPU at high
// packet rates; tcpdump's loop is a pcap_dispatch callback too). It reads
// what libpcap holds now, up to DispatchCount packets, until stopAt
// bytes or want records are written or buf has no room for the largest
// record (RecordRoom); more says libpcap may hold more. Packets beyond
// want are read and passed over (want 0 discards them all). A packet that
// finds no room, which a libpcap that heeds pcap_breakloop only at the
// end of a ring block can cause, is dropped and counted.
func (h *Handle) Dispatch(buf []byte, want uint64, stopAt int) (r Records, more bool, err error) {
	if len(buf) == 0 {
		return Records{}, false, errors.New("dispatch into a full buffer")
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.p == nil {
		return Records{}, false, ErrClosed
	}
	st := &h.d.st
	*st = C.pcs_state{
		cap:      C.size_t(len(buf)),
		stop_at:  C.size_t(stopAt),
		room:     C.size_t(h.RecordRoom()),
		want:     C.uint64_t(want),
		ts_scale: C.int(h.tsScale),
	}
	ret := C.pcs_dispatch(h.p, (*C.uchar)(unsafe.Pointer(&buf[0])), st, DispatchCount)
	r = Records{Len: int(st.len), Kept: uint64(st.kept), Over: uint64(st.over), Lost: uint64(st.dropped), Seen: int(st.seen)}
	if ret == C.PCAP_ERROR {
		return r, false, errors.New(C.GoString(C.pcap_geterr(h.p)))
	}
	return r, ret == DispatchCount, nil
}
