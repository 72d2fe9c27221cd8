package capture

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/gopacket/gopacket/pcap"

	"github.com/cloudfoundry/pcap-server-release/cellagent/bpfcompile"
	"github.com/cloudfoundry/pcap-server-release/cellagent/libpcap"
	"github.com/cloudfoundry/pcap-server-release/internal/bpfbound"
	"github.com/cloudfoundry/pcap-server-release/wire"
)

// setFilter compiles o.Filter for every activated handle and sets it. A
// handle whose filter cannot be set is closed, handles[k] set to nil and
// errs[k] says why. It runs inside the target namespace.
//
// The filter is compiled in a child process: gopacket compiles under one
// lock for the whole process, so a filter that keeps libpcap busy would
// hold every other capture start on the cell; the child has a budget, one
// for all devices of the capture.
func setFilter(o Options, devices []string, handles []*libpcap.Handle, errs []error) {
	if o.Filter == "" {
		return
	}
	var targets []bpfcompile.Target
	var open []int // the index in devices of each target
	for k, h := range handles {
		if h != nil {
			targets = append(targets, bpfcompile.Target{Device: devices[k], LinkType: h.LinkType(), Snaplen: o.Snaplen, Netmask: bpfcompile.Netmask(devices[k])})
			open = append(open, k)
		}
	}
	programs, compileErrs := compile(o, targets)
	for i, k := range open {
		insns, err := programs[i], compileErrs[i]
		if err == nil && len(insns) > pcap.MaxBpfInstructions {
			err = &bpfcompile.FilterError{Msg: fmt.Sprintf("it compiles to %d BPF instructions, more than the kernel's limit of %d", len(insns), pcap.MaxBpfInstructions)}
		}
		if err == nil {
			// libpcap filters in user space whatever reached the ring before
			// the kernel filter was set, so no unfiltered packet gets through.
			err = handles[k].SetFilter(instructions(insns))
		}
		if err != nil {
			handles[k].Close()
			handles[k], errs[k] = nil, filterError(o.Filter, devices[k], err)
		}
	}
}

// compile compiles o.Filter for each target, unless it names a host
// (internal/bpfbound), which the API refuses too but an older API does
// not: the compile child would resolve the name in the container's
// network. A filter over the API's bound of operators meets the child's
// budget instead.
func compile(o Options, targets []bpfcompile.Target) ([][]pcap.BPFInstruction, []error) {
	if names := bpfbound.HostNames(o.Filter); len(names) > 0 {
		errs := make([]error, len(targets))
		for i := range errs {
			errs[i] = &bpfcompile.FilterError{Msg: (&bpfbound.HostNameError{Name: names[0]}).Error()}
		}
		return make([][]pcap.BPFInstruction, len(targets)), errs
	}
	return o.Compiler.CompileAll(context.Background(), targets, o.Filter)
}

// instructions converts the compiler's program for the handle.
func instructions(insns []pcap.BPFInstruction) []libpcap.Instruction {
	out := make([]libpcap.Instruction, len(insns))
	for i, in := range insns {
		out[i] = libpcap.Instruction{Code: in.Code, Jt: in.Jt, Jf: in.Jf, K: in.K}
	}
	return out
}

// filterError is the OpenError of a filter that could not be set.
func filterError(filter, device string, err error) error {
	// A long filter would push the reason out of the API's message.
	shown := filter
	if len(shown) > 80 {
		shown = strings.ToValidUTF8(shown[:80], "") + "..."
	}
	var fe *bpfcompile.FilterError
	var be *bpfcompile.BudgetError
	if errors.As(err, &fe) || errors.As(err, &be) {
		return &OpenError{Code: wire.ErrBadFilter, Msg: fmt.Sprintf("bad filter %q: %v", shown, err), Err: err}
	}
	return &OpenError{Code: wire.ErrInternal, Msg: fmt.Sprintf("set filter %q on %s: %v", shown, device, err), Err: err}
}
