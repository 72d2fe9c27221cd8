package bpfcompile

/*
#cgo linux LDFLAGS: -lpcap
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <pcap/pcap.h>

#define PCS_CHILD_ARG "compile-bpf-filter"

// pcs_inherited is 1 once a compiler child has closed every descriptor
// it inherited beyond stdin, stdout and stderr, -errno if it could not,
// and 0 in any other process.
static int pcs_inherited;

// pcs_close_inherited runs before the Go runtime starts (a constructor
// of the executable, called with main's arguments), when the only
// descriptors are inherited ones: the runtime opens its own (cgroup
// files, the netpoller) while it starts, and they must stay. Only a
// process started as a compiler child closes anything.
__attribute__((constructor)) static void pcs_close_inherited(int argc, char **argv, char **envp) {
	(void)envp;
	if (argc < 2 || strcmp(argv[1], PCS_CHILD_ARG) != 0) {
		return;
	}
	if (syscall(SYS_close_range, 3, ~0U, 0) == 0) {
		pcs_inherited = 1;
		return;
	}
	if (errno != ENOSYS) {
		pcs_inherited = -errno;
		return;
	}
	// Before Linux 5.9: one by one, up to the descriptor limit.
	long max = sysconf(_SC_OPEN_MAX);
	for (long fd = 3; fd < max; fd++) {
		close((int)fd);
	}
	pcs_inherited = 1;
}

static int pcs_inherited_closed(void) { return pcs_inherited; }
*/
import "C"

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"unsafe"
)

// niceStep is how much the compiling thread lowers its priority below
// the agent's: a compile yields to the apps on the cell and to the agent.
const niceStep = 10

// maxRequest bounds what the child reads: a filter is at most 5000
// characters (wire.MaxFilterLength), escaped in JSON.
const maxRequest = 64 << 10

// childRingBytes is the kernel ring of the child's live handle, which
// never reads it: libpcap allocates one block (256 KiB) for anything up to
// that.
const childRingBytes = 256 << 10

// Main turns this process into a compiler child if it was started as one
// (first argument ChildArg): it compiles, answers on stdout and exits.
// Otherwise it returns at once. Call it first thing in main and TestMain.
func Main() {
	if len(os.Args) < 2 || os.Args[1] != ChildArg {
		return
	}
	err := inheritedClosed()
	if err == nil {
		err = serveChild(os.Stdin, os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bpf compiler child:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// inheritedClosed reports whether this child closed what it inherited
// from the agent (pcs_close_inherited): another capture's packet socket
// held here would outlive its capture, with its kernel ring, for as long
// as the compile runs.
func inheritedClosed() error {
	switch st := C.pcs_inherited_closed(); {
	case st == 1:
		return nil
	case st < 0:
		return fmt.Errorf("close inherited descriptors: %w", syscall.Errno(-st))
	default:
		return fmt.Errorf("inherited descriptors not closed: the child argument is %q, not %q", ChildArg, C.PCS_CHILD_ARG)
	}
}

func serveChild(in io.Reader, out io.WriteCloser) error {
	var req request
	if err := json.NewDecoder(io.LimitReader(in, maxRequest)).Decode(&req); err != nil {
		return fmt.Errorf("read request: %w", err)
	}
	p, err := openLive(req)
	if err != nil {
		return answer(out, response{DeviceError: err.Error()})
	}
	// The handle is not closed: the process exits once it has answered,
	// and the kernel releases the packet socket then (which waits for RCU
	// grace periods, some 25 ms), while the parent goes on.
	// The budget applies before libpcap sees the filter.
	if err := limit(req.CPUSecs, req.Memory); err != nil {
		return err
	}
	runtime.LockOSThread() // the cgo call below runs on this thread
	// On Linux getpriority answers 20 - nice, and both calls apply to
	// the calling thread only.
	if prio, err := syscall.Getpriority(syscall.PRIO_PROCESS, 0); err == nil {
		_ = syscall.Setpriority(syscall.PRIO_PROCESS, 0, min(19, 20-prio+niceStep))
	}
	return answer(out, compile(p, req))
}

// answer writes resp and closes out: the parent takes the end of its
// input for the end of the answer and does not wait for the exit.
func answer(out io.WriteCloser, resp response) error {
	err := json.NewEncoder(out).Encode(resp)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

// limit caps CPU time (SIGKILL at the hard limit, equal to the soft one)
// and the address space this process may still add.
func limit(cpuSecs, memory uint64) error {
	if err := syscall.Setrlimit(syscall.RLIMIT_CPU, &syscall.Rlimit{Cur: cpuSecs, Max: cpuSecs}); err != nil {
		return fmt.Errorf("limit CPU time: %w", err)
	}
	size, err := addressSpace()
	if err != nil {
		return err
	}
	as := size + memory
	if err := syscall.Setrlimit(syscall.RLIMIT_AS, &syscall.Rlimit{Cur: as, Max: as}); err != nil {
		return fmt.Errorf("limit address space: %w", err)
	}
	return nil
}

// addressSpace is the process's current virtual size (VmSize).
func addressSpace() (uint64, error) {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmSize:"); ok {
			kib, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("VmSize %q: %w", v, err)
			}
			return kib << 10, nil
		}
	}
	return 0, fmt.Errorf("no VmSize in /proc/self/status")
}

// openLive activates a handle of the device, in the network namespace
// the child was started in (the container's), as the capture's own: code
// generation depends on the live handle. On Linux it knows the kernel's
// VLAN metadata (BPF_SPECIAL_VLAN_HANDLING), which a pcap_open_dead handle
// lacks: there "vlan" tests the packet's bytes for a tag the kernel has
// already removed, and matches nothing. The handle's ring is never read.
func openLive(req request) (*C.pcap_t, error) {
	if req.Device == "" {
		return nil, fmt.Errorf("no device to compile for")
	}
	dev := C.CString(req.Device)
	defer C.free(unsafe.Pointer(dev))
	errbuf := (*C.char)(C.calloc(C.PCAP_ERRBUF_SIZE, 1))
	defer C.free(unsafe.Pointer(errbuf))
	p := C.pcap_create(dev, errbuf)
	if p == nil {
		return nil, fmt.Errorf("create a handle of %s: %s", req.Device, C.GoString(errbuf))
	}
	C.pcap_set_snaplen(p, C.int(req.Snaplen))
	C.pcap_set_buffer_size(p, childRingBytes)
	if status := C.pcap_activate(p); status < 0 {
		err := fmt.Errorf("activate a handle of %s: %s: %s", req.Device, C.GoString(C.pcap_statustostr(status)), C.GoString(C.pcap_geterr(p)))
		C.pcap_close(p)
		return nil, err
	}
	if int(C.pcap_datalink(p)) != req.LinkType && C.pcap_set_datalink(p, C.int(req.LinkType)) < 0 {
		err := fmt.Errorf("link type %d on %s: %s", req.LinkType, req.Device, C.GoString(C.pcap_geterr(p)))
		C.pcap_close(p)
		return nil, err
	}
	return p, nil
}

func compile(p *C.pcap_t, req request) response {
	expr := C.CString(req.Filter)
	defer C.free(unsafe.Pointer(expr))
	var prog C.struct_bpf_program
	if C.pcap_compile(p, &prog, expr, 1, C.bpf_u_int32(req.Netmask)) < 0 {
		msg := C.GoString(C.pcap_geterr(p))
		// libpcap says "out of memory" (parser, code generator) or
		// "malloc" (optimizer) when an allocation fails.
		oom := strings.Contains(msg, "out of memory") || strings.Contains(msg, "malloc")
		return response{Error: msg, OutOfMemory: oom}
	}
	defer C.pcap_freecode(&prog)
	insns := unsafe.Slice(prog.bf_insns, int(prog.bf_len))
	resp := response{Instructions: make([][4]uint32, len(insns))}
	for i, in := range insns {
		resp.Instructions[i] = [4]uint32{uint32(in.code), uint32(in.jt), uint32(in.jf), uint32(in.k)}
	}
	return resp
}
