// Package bpfcompile compiles BPF filters with libpcap in a child process
// of the agent's own binary, so that a hostile filter costs only its own
// time and memory budget and never holds up other tenants' captures.
//
// In the agent's process every compile would go through gopacket, which
// serialises all of them behind one process-wide lock (pcapCompileMu):
// a filter that keeps libpcap's optimizer busy for half a minute would
// make every other capture start on the cell wait that long. A child
// compiles under setrlimit (CPU seconds and address space), at a lower
// priority, and is killed at a wall-clock deadline; the agent installs the
// instructions it returns with pcap_setfilter, which takes no lock.
//
// The child is the running executable itself (/proc/self/exe, so that an
// upgrade that replaced the file on disk does not matter) started with
// ChildArg: every binary that compiles filters (the agent, and the test
// binaries of packages that open captures) calls Main first thing.
package bpfcompile

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/gopacket/gopacket/pcap"
)

// ChildArg is the first argument of a compiler child.
const ChildArg = "compile-bpf-filter"

// NetmaskUnknown is libpcap's PCAP_NETMASK_UNKNOWN: "ip broadcast" is then
// refused.
const NetmaskUnknown = 0xffffffff

// Budget bounds one compile, and all compiles of one filter for a
// capture's devices together. Zero fields take the defaults.
type Budget struct {
	// CPU is the child's CPU time (RLIMIT_CPU, whole seconds, rounded up).
	CPU time.Duration
	// Memory is the address space the child may add to what it has when
	// it starts compiling (RLIMIT_AS).
	Memory int64
	// Wall bounds the compile in real time: a filter naming hosts waits
	// for DNS, which costs no CPU.
	Wall time.Duration
	// TotalWall bounds CompileAll in real time.
	TotalWall time.Duration
}

// Defaults. The slowest filters found within the API's bound
// (bpfbound.MaxOperators, no host names) compile in 0.3 s and 12 MB; the
// budget is several times that, and still ends the 27 s, 110 MB
// filter early.
// DefaultTotalWall keeps a capture of several devices within the API's
// 15 s wait for the agent's answer (proxy/capture), with room for the
// container lookup: beyond it the user would get a 503 "did not answer"
// instead of a 400 that names the budget.
const (
	DefaultCPU       = 2 * time.Second
	DefaultMemory    = 256 << 20
	DefaultWall      = 5 * time.Second
	DefaultTotalWall = 8 * time.Second
)

func (b Budget) withDefaults() Budget {
	if b.CPU <= 0 {
		b.CPU = DefaultCPU
	}
	if b.Memory <= 0 {
		b.Memory = DefaultMemory
	}
	if b.Wall <= 0 {
		b.Wall = DefaultWall
	}
	if b.TotalWall <= 0 {
		b.TotalWall = DefaultTotalWall
	}
	return b
}

// Compiler compiles filters in child processes. The zero value uses the
// default budget.
type Compiler struct {
	Budget Budget
}

// FilterError is libpcap refusing the filter: its own message.
type FilterError struct{ Msg string }

func (e *FilterError) Error() string { return e.Msg }

// BudgetError is a compile that ran out of its budget.
type BudgetError struct {
	// Resource is "CPU time", "memory", "wall-clock time" or
	// "wall-clock time for all devices".
	Resource string
	// Limit is the budget, such as "2s" or "256 MiB".
	Limit string
}

func (e *BudgetError) Error() string {
	return fmt.Sprintf("compiling it needs more than the agent's budget of %s of %s; simplify the filter (fewer and/or alternatives, ranges instead of lists)", e.Limit, e.Resource)
}

// Target is the capture a filter is compiled for.
type Target struct {
	// Device is the captured interface, in the network namespace of the
	// calling thread.
	Device string
	// LinkType and Snaplen are the capture handle's.
	LinkType, Snaplen int
	// Netmask is the device's IPv4 netmask (for "ip broadcast"),
	// NetmaskUnknown when unknown.
	Netmask uint32
}

// maxAnswer bounds what the parent reads from a child: a program of the
// kernel's 4096 instructions takes some 100 KiB.
const maxAnswer = 16 << 20

// request and response are what parent and child exchange (stdin, stdout).
type request struct {
	Device   string `json:"device"`
	LinkType int    `json:"link_type"`
	Snaplen  int    `json:"snaplen"`
	Netmask  uint32 `json:"netmask"`
	Filter   string `json:"filter"`
	CPUSecs  uint64 `json:"cpu_seconds"`
	Memory   uint64 `json:"memory_bytes"`
}

type response struct {
	// Instructions are code, jt, jf, k each.
	Instructions [][4]uint32 `json:"instructions,omitempty"`
	Error        string      `json:"error,omitempty"`
	OutOfMemory  bool        `json:"out_of_memory,omitempty"`
	// DeviceError is the device's handle failing to activate.
	DeviceError string `json:"device_error,omitempty"`
}

// Compile compiles expr for the target capture as libpcap would on the
// capture's handle: the child activates a handle of the device (without
// reading it), in the network namespace of the calling thread, which the
// child inherits. Errors are *FilterError, *BudgetError, or another error
// when no child could run or the device could not be opened. A nil
// Compiler uses the default budget.
func (c *Compiler) Compile(ctx context.Context, t Target, expr string) ([]pcap.BPFInstruction, error) {
	var b Budget
	if c != nil {
		b = c.Budget
	}
	b = b.withDefaults()
	req, err := json.Marshal(request{
		Device: t.Device, LinkType: t.LinkType, Snaplen: t.Snaplen, Netmask: t.Netmask, Filter: expr,
		CPUSecs: uint64((b.CPU + time.Second - 1) / time.Second), Memory: uint64(b.Memory),
	})
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, b.Wall)
	defer cancel()
	cmd := exec.CommandContext(wctx, "/proc/self/exe", ChildArg)
	// One P is all a compile uses; fewer threads, less address space.
	// One malloc arena: glibc gives a thread that mallocs an arena of its
	// own, reserving 64 MiB of address space at once; one reserved before
	// the child sets its memory budget (while it activates the device's
	// handle) would let the compile use that much beyond the budget.
	cmd.Env = append(os.Environ(), "GOMAXPROCS=1", "MALLOC_ARENA_MAX=1")
	cmd.Stdin = bytes.NewReader(req)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.WaitDelay = time.Second
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("compile filter: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("compile filter: start a child process: %w", err)
	}
	// The child closes its stdout once it has answered. Its exit takes
	// longer: the kernel releases the device's packet socket then, which
	// waits for RCU grace periods (some 25 ms). A complete answer is used
	// at once; the exit is awaited meanwhile (and hastened by the
	// deferred cancel, which kills the child).
	answer, readErr := io.ReadAll(io.LimitReader(stdout, maxAnswer))
	var resp response
	if readErr == nil && wctx.Err() == nil && json.Unmarshal(answer, &resp) == nil {
		go func() { _ = cmd.Wait() }()
		return resp.program(b)
	}
	runErr := cmd.Wait()
	if wctx.Err() != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("compile filter: %w", ctx.Err())
		}
		return nil, &BudgetError{Resource: "wall-clock time", Limit: b.Wall.String()}
	}
	if runErr != nil {
		var ee *exec.ExitError
		if errors.As(runErr, &ee) {
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && (ws.Signal() == syscall.SIGKILL || ws.Signal() == syscall.SIGXCPU) {
				return nil, &BudgetError{Resource: "CPU time", Limit: b.CPU.String()}
			}
			if strings.Contains(stderr.String(), "out of memory") {
				return nil, &BudgetError{Resource: "memory", Limit: fmt.Sprintf("%d MiB", b.Memory>>20)}
			}
		}
		return nil, fmt.Errorf("compile filter in a child process: %w: %s", runErr, clip(stderr.String()))
	}
	if readErr == nil {
		readErr = json.Unmarshal(answer, &resp)
	}
	return nil, fmt.Errorf("compile filter: unreadable answer from the child process: %w", readErr)
}

// program is the compiled program the child answered, or why there is
// none.
func (resp *response) program(b Budget) ([]pcap.BPFInstruction, error) {
	switch {
	case resp.DeviceError != "":
		return nil, fmt.Errorf("compile filter: %s", resp.DeviceError)
	case resp.OutOfMemory:
		return nil, &BudgetError{Resource: "memory", Limit: fmt.Sprintf("%d MiB", b.Memory>>20)}
	case resp.Error != "":
		return nil, &FilterError{Msg: resp.Error}
	}
	out := make([]pcap.BPFInstruction, len(resp.Instructions))
	for i, in := range resp.Instructions {
		out[i] = pcap.BPFInstruction{Code: uint16(in[0]), Jt: uint8(in[1]), Jf: uint8(in[2]), K: in[3]}
	}
	return out, nil
}

// CompileAll compiles expr for each target: results[k] and errs[k] are
// Compile's for targets[k]. Targets that differ in their device only get
// one compile: libpcap generates code from the handle's link type and
// snaplen, the netmask, and the kernel's BPF extensions, which are the
// same for every device; and the netmask only for "ip broadcast", so it
// tells targets apart only if expr mentions "broadcast". The compiles run one after another within
// TotalWall in all, each within Wall; once one ran out of a budget the
// filter is taken to be over it for every target, as the optimizer's cost
// comes from the expression, not the link type. Sequential rather than in
// parallel: a filter over budget then costs one compile's CPU, not one per
// link type on a cell that runs apps, and filters within budget compile in
// milliseconds either way.
func (c *Compiler) CompileAll(ctx context.Context, targets []Target, expr string) (results [][]pcap.BPFInstruction, errs []error) {
	var b Budget
	if c != nil {
		b = c.Budget
	}
	b = b.withDefaults()
	results, errs = make([][]pcap.BPFInstruction, len(targets)), make([]error, len(targets))
	type key struct {
		linkType, snaplen int
		netmask           uint32
	}
	type result struct {
		insns []pcap.BPFInstruction
		err   error
	}
	done := map[key]result{}
	var overBudget error
	usesNetmask := strings.Contains(strings.ToLower(expr), "broadcast")
	deadline := time.Now().Add(b.TotalWall)
	for k, t := range targets {
		id := key{t.LinkType, t.Snaplen, t.Netmask}
		if !usesNetmask {
			id.netmask = NetmaskUnknown
		}
		r, ok := done[id]
		switch {
		case ok:
		case overBudget != nil:
			r.err = overBudget
		default:
			one := b
			one.Wall = min(b.Wall, time.Until(deadline))
			if one.Wall <= 0 {
				r.err = &BudgetError{Resource: "wall-clock time for all devices", Limit: b.TotalWall.String()}
			} else {
				r.insns, r.err = (&Compiler{Budget: one}).Compile(ctx, t, expr)
			}
			var be *BudgetError
			if errors.As(r.err, &be) {
				if be.Resource == "wall-clock time" && one.Wall < b.Wall {
					r.err = &BudgetError{Resource: "wall-clock time for all devices", Limit: b.TotalWall.String()}
				}
				overBudget = r.err
			}
			done[id] = r
		}
		results[k], errs[k] = r.insns, r.err
	}
	return results, errs
}

// clip keeps a child's stderr short enough for a log line.
func clip(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}

// Netmask is the device's IPv4 netmask, found as libpcap's pcap_lookupnet
// finds it for a live handle, in the calling thread's network namespace;
// NetmaskUnknown if it has none.
func Netmask(device string) uint32 {
	ifc, err := net.InterfaceByName(device)
	if err != nil {
		return NetmaskUnknown
	}
	addrs, err := ifc.Addrs()
	if err != nil {
		return NetmaskUnknown
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && len(ipn.Mask) == net.IPv4len {
			return binary.BigEndian.Uint32(ipn.Mask)
		}
	}
	return NetmaskUnknown
}
