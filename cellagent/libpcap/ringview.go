package libpcap

import (
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// RingView is a second, read-only mapping of libpcap's packet ring: it
// tells how many ring blocks the kernel has handed over that the reader
// has not read yet, without a system call, so that the reader can let
// blocks gather while the traffic is light and read before the ring
// fills.
type RingView struct {
	mem       []byte
	blockSize int
	blocks    int
}

// libpcap's TPACKET_V3 ring has blocks of the smallest power of two
// (from a page) that holds a "frame" of its maximum snaplen, 262144
// bytes, and as many blocks as the buffer size needs (pcap-linux.c,
// create_ring).
const ringBlockSize = 256 << 10

// MapRing maps the ring of the packet socket fd (SelectableFD, or a
// duplicate of it), assumed to be libpcap's layout for a buffer of
// bufferBytes. The kernel refuses a mapping of another size, and then
// there is no view (nil): the reader does without. The mapping stays
// valid after the handle is closed, until Close.
func MapRing(fd, bufferBytes int) *RingView {
	blocks := (bufferBytes + ringBlockSize - 1) / ringBlockSize
	mem, err := unix.Mmap(fd, 0, blocks*ringBlockSize, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil
	}
	return &RingView{mem: mem, blockSize: ringBlockSize, blocks: blocks}
}

// Blocks is the number of blocks in the ring.
func (v *RingView) Blocks() int { return v.blocks }

// Ready counts the blocks handed over to user space (TP_STATUS_USER in
// the block descriptor's block_status, at offset 8), which the kernel
// writes while this reads.
func (v *RingView) Ready() int {
	n := 0
	for b := range v.blocks {
		status := (*uint32)(unsafe.Pointer(&v.mem[b*v.blockSize+8]))
		if atomic.LoadUint32(status)&unix.TP_STATUS_USER != 0 {
			n++
		}
	}
	return n
}

// Close unmaps the view; a nil view is fine.
func (v *RingView) Close() {
	if v != nil {
		_ = unix.Munmap(v.mem)
	}
}
