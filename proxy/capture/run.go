package capture

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/gopacket/gopacket/layers"

	"github.com/cloudfoundry/pcap-server-release/proxy/apimetrics"
	"github.com/cloudfoundry/pcap-server-release/wire"
)

// Drops are packets lost on the way, by where they were lost.
type Drops struct {
	Kernel, Agent, API uint64
}

// Total is the sum.
func (d Drops) Total() uint64 { return d.Kernel + d.Agent + d.API }

// Result says how a capture went.
type Result struct {
	Reason wire.EndReason
	// Packets and Bytes were written to the client (Bytes counts the whole
	// file, headers included).
	Packets uint64
	Bytes   int64
	Dropped Drops
	// Instances lists each instance's own end.
	Instances []InstanceResult
}

// InstanceResult is one instance's end.
type InstanceResult struct {
	Index   int
	Reason  wire.EndReason
	Message string
	Stats   wire.Stats
	APIDrop uint64
}

// Started describes the running instances, in the order of their pcapng
// interfaces.
func (s *Session) Started() []Target {
	out := make([]Target, len(s.instances))
	for i, inst := range s.instances {
		out[i] = inst.target
	}
	return out
}

// Run streams the capture to w until it ends: by the client leaving (ctx),
// a limit, every instance ending, or a reason sent on stop (the API
// draining). flush pushes what was written to the client. Run always
// leaves w ending on a whole record, and returns once every stream is
// closed.
func (s *Session) Run(ctx context.Context, w io.Writer, flush func() error, stop <-chan wire.EndReason) Result {
	r := &run{Session: s, cw: &countingWriter{w: w}, flushClient: flush, start: time.Now()}
	r.merge = newMerger(len(s.instances), holdTime, s.opts.BufferBytes)
	defer r.close()
	if err := r.open(); err != nil {
		s.log.Warn("write capture header", "error", err)
		r.decide(wire.EndClientGone)
		r.writing = false
	}
	for i := range s.instances {
		r.readers.Go(func() { r.read(i) })
	}
	r.loop(ctx, stop)
	return r.result()
}

// run is the state of one Run.
type run struct {
	*Session
	cw          *countingWriter
	flushClient func() error
	out         output
	merge       *merger
	readers     sync.WaitGroup // stream readers and stop senders
	start       time.Time

	packets uint64
	planned int64 // bytes written or buffered for the client
	// What the metrics have counted so far.
	reportedPackets uint64
	reportedBytes   int64
	writing         bool // false once the client is gone or a limit is hit
	reason          wire.EndReason
	stopping        bool
	lastEnd         wire.EndReason // the instance that ended last
	endMu           sync.Mutex
}

func (r *run) open() error {
	var err error
	first := r.instances[0].started
	if r.req.Format == FormatPcapng {
		ifaces := make([]ngInterface, len(r.instances))
		for i, inst := range r.instances {
			ifaces[i] = ngInterface{
				name:        fmt.Sprintf("%s/%d", appLabel(inst.target), inst.target.Index),
				description: fmt.Sprintf("%s on cell %s, container %s", inst.started.Device, inst.target.CellIP, inst.started.Container),
				filter:      r.req.Filter,
				linkType:    layers.LinkType(inst.started.LinkType),
				snaplen:     inst.started.Snaplen,
			}
		}
		r.out, err = newPcapngOutput(r.cw, ifaces)
	} else {
		r.out, err = newPcapOutput(r.cw, first.Snaplen, layers.LinkType(first.LinkType))
	}
	if err == nil {
		err = r.flush()
	}
	r.report()
	r.writing = err == nil
	r.planned = r.cw.n
	return err
}

func appLabel(t Target) string {
	if t.AppName != "" {
		return t.AppName
	}
	return t.AppGUID
}

// report counts what reached the client since the last report.
func (r *run) report() {
	r.opts.Metrics.Streamed(int(r.packets-r.reportedPackets), int(r.cw.n-r.reportedBytes))
	r.reportedPackets, r.reportedBytes = r.packets, r.cw.n
}

func (r *run) flush() error {
	if err := r.out.flush(); err != nil {
		return err
	}
	return r.flushClient()
}

func (r *run) loop(ctx context.Context, stop <-chan wire.EndReason) {
	var durationC <-chan time.Time
	if r.req.Duration > 0 || !r.req.Deadline.IsZero() {
		t := time.NewTimer(r.req.remaining())
		defer t.Stop()
		durationC = t.C
	}
	hold := time.NewTimer(time.Hour)
	defer hold.Stop()
	statsTick := time.NewTicker(r.opts.StatsInterval)
	defer statsTick.Stop()
	var stopDeadline <-chan time.Time
	var batch []queued
	clientDone := ctx.Done()
	for {
		select {
		case <-clientDone:
			// Once is enough: a closed channel would spin this loop.
			clientDone = nil
			r.decide(wire.EndClientGone)
		case <-durationC:
			r.decide(wire.EndDuration)
		case reason := <-stop:
			r.decide(reason)
			stop = nil
		case <-r.merge.wake:
		case <-hold.C:
		case now := <-statsTick.C:
			if r.writing && r.req.Format == FormatPcapng {
				r.writeInterfaceStats(now)
				if err := r.flush(); err != nil {
					r.clientGone(err)
				}
				r.report()
			}
		case <-stopDeadline:
			r.log.Warn("agents did not end in time after stop", "timeout", stopTimeout.String())
			return
		}
		if r.stopping && stopDeadline == nil {
			t := time.NewTimer(stopTimeout)
			defer t.Stop()
			stopDeadline = t.C
		}
		var next time.Duration
		var done bool
		batch, next, done = r.merge.pop(batch[:0])
		r.write(batch)
		if done {
			return
		}
		if next > 0 {
			hold.Reset(next)
		}
	}
}

// write sends packets to the client, enforcing the packet and byte limits.
func (r *run) write(batch []queued) {
	if !r.writing || len(batch) == 0 {
		return
	}
	for _, q := range batch {
		if r.req.MaxPackets > 0 && r.packets >= r.req.MaxPackets {
			r.decide(wire.EndPackets)
			r.writing = false
			break
		}
		size := r.out.size(len(q.Data))
		if r.req.MaxBytes > 0 && r.planned+size > r.req.MaxBytes {
			r.decide(wire.EndMaxBytes)
			r.writing = false
			break
		}
		if err := r.out.writePacket(q.inst, q.Packet); err != nil {
			r.clientGone(err)
			return
		}
		r.planned += size
		r.packets++
	}
	err := r.flush()
	r.report()
	if err != nil {
		r.clientGone(err)
		return
	}
	if r.req.MaxPackets > 0 && r.packets >= r.req.MaxPackets {
		r.decide(wire.EndPackets)
		r.writing = false
	}
}

func (r *run) clientGone(err error) {
	r.log.Info("client gone", "error", err)
	r.decide(wire.EndClientGone)
	r.writing = false
}

// decide ends the capture for reason, unless it is already ending: every
// running agent is asked to stop (and drain, where the packets are still
// wanted).
func (r *run) decide(reason wire.EndReason) {
	if r.stopping {
		return
	}
	r.stopping = true
	r.reason = reason
	if reason == wire.EndClientGone {
		r.writing = false
	}
	for _, inst := range r.instances {
		// A stalled tunnel may block a write for yamux's write timeout;
		// the loop must go on meanwhile. close waits for these too.
		r.readers.Go(func() {
			if err := inst.w.WriteMessage(&wire.Stop{Reason: reason}); err != nil {
				r.log.Debug("send stop", "index", inst.target.Index, "error", err)
			}
		})
	}
}

// read consumes one instance's stream until its End or its failure.
func (r *run) read(i int) {
	inst := r.instances[i]
	defer r.merge.end(i)
	var pkts []wire.Packet
	for {
		f, err := inst.r.NextKnown(func(t wire.Type) { r.log.Debug("skipping unknown frame", "type", t) })
		if err != nil {
			r.instanceEnded(inst, nil, err)
			return
		}
		switch f.Type {
		case wire.TypePackets:
			// The reader's buffer is reused: the merger needs its own copy.
			payload := append([]byte(nil), f.Payload...)
			if pkts, err = wire.DecodePackets(payload, pkts[:0]); err != nil {
				// The stream is broken: close it at once, so that the
				// agent stops capturing for nobody.
				_ = inst.stream.Close()
				r.instanceEnded(inst, &wire.End{Reason: wire.EndError, Message: err.Error(), Stats: inst.snapshot()}, nil)
				return
			}
			r.opts.Metrics.Drop(apimetrics.DropAPI, uint64(r.merge.push(i, pkts)))
		case wire.TypeStats, wire.TypeEnd:
			m, err := wire.Decode(f)
			if err != nil {
				r.instanceEnded(inst, nil, err)
				return
			}
			if st, ok := m.(*wire.Stats); ok {
				r.updateStats(inst, st)
				continue
			}
			r.instanceEnded(inst, m.(*wire.End), nil)
			return
		default:
			r.log.Warn("unexpected frame from agent", "index", inst.target.Index, "type", f.Type)
		}
	}
}

// snapshot is the instance's counters so far.
func (i *instance) snapshot() wire.Stats {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.stats
}

// updateStats records an instance's counters and counts the new drops.
func (r *run) updateStats(inst *instance, st *wire.Stats) {
	inst.mu.Lock()
	prev := inst.stats
	inst.stats = *st
	inst.mu.Unlock()
	r.opts.Metrics.Drop(apimetrics.DropKernel, delta(st.KernelDropped+st.InterfaceDropped, prev.KernelDropped+prev.InterfaceDropped))
	r.opts.Metrics.Drop(apimetrics.DropAgent, delta(st.AgentDropped, prev.AgentDropped))
}

// delta of cumulative counters; a counter that went back (it cannot, but
// the agent is not trusted) adds nothing.
func delta(now, before uint64) uint64 {
	if now < before {
		return 0
	}
	return now - before
}

func (r *run) instanceEnded(inst *instance, end *wire.End, err error) {
	if end != nil {
		if !end.Reason.Valid() {
			end.Reason = wire.EndError
		}
		end.Message = clip(end.Message)
		r.updateStats(inst, &end.Stats)
	}
	inst.mu.Lock()
	inst.end, inst.err, inst.endAt = end, err, time.Now()
	reason := inst.reasonLocked()
	inst.mu.Unlock()
	r.endMu.Lock()
	r.lastEnd = reason
	r.endMu.Unlock()
	log := r.log.With("index", inst.target.Index, "reason", reason)
	if err != nil && !errors.Is(err, io.EOF) {
		log.Info("instance stream ended", "error", err)
	} else {
		log.Debug("instance ended")
	}
}

// reasonLocked is why the instance ended, from its side.
func (i *instance) reasonLocked() wire.EndReason {
	if i.end != nil {
		return i.end.Reason
	}
	return wire.EndAgentLost
}

// close ends every stream and waits for the readers.
func (r *run) close() {
	for _, inst := range r.instances {
		_ = inst.stream.Close()
		// An agent that never closes its side must not keep a reader.
		_ = inst.stream.SetReadDeadline(time.Now().Add(time.Second))
	}
	r.readers.Wait()
	for _, inst := range r.instances {
		inst.agent.Release()
	}
}

func (r *run) result() Result {
	res := Result{Packets: r.packets}
	if r.stopping {
		res.Reason = r.reason
	} else {
		r.endMu.Lock()
		res.Reason = r.lastEnd
		r.endMu.Unlock()
	}
	for i, inst := range r.instances {
		inst.mu.Lock()
		ir := InstanceResult{Index: inst.target.Index, Reason: inst.reasonLocked(), Stats: inst.stats, APIDrop: r.merge.droppedBy(i)}
		switch {
		case inst.end != nil:
			ir.Message = inst.end.Message
		case inst.err != nil:
			ir.Message = inst.err.Error()
		}
		inst.mu.Unlock()
		res.Instances = append(res.Instances, ir)
		res.Dropped.Kernel += ir.Stats.KernelDropped + ir.Stats.InterfaceDropped
		res.Dropped.Agent += ir.Stats.AgentDropped
		res.Dropped.API += ir.APIDrop
	}
	if r.writing {
		r.writeInterfaceStats(time.Now())
	}
	if r.writing {
		_ = r.flush()
	}
	r.report()
	res.Bytes = r.cw.n
	return res
}

// writeInterfaceStats writes every instance's counters so far (pcapng
// only): a reader following the stream, the CLI among them, sees the
// drops while the capture runs, and the last ones close the file.
func (r *run) writeInterfaceStats(now time.Time) {
	for i, inst := range r.instances {
		inst.mu.Lock()
		st := inst.stats
		inst.mu.Unlock()
		apiDrop := r.merge.droppedBy(i)
		err := r.out.writeStats(i, ifaceStats{
			// The agent's counters may lag behind the API's drops.
			delivered: delta(st.Packets, apiDrop),
			dropped:   st.KernelDropped + st.InterfaceDropped + st.AgentDropped + apiDrop,
			start:     r.start,
			end:       now,
		})
		if err != nil {
			r.clientGone(err)
			return
		}
	}
}

// DropDetail formats drops as the Pcap-Dropped-Detail trailer does.
func (d Drops) DropDetail() string {
	return fmt.Sprintf("kernel=%d agent=%d api=%d", d.Kernel, d.Agent, d.API)
}

// FormatInstanceErrors renders errors as the Pcap-Instance-Errors header.
func FormatInstanceErrors(errs []*InstanceError) string {
	parts := make([]string, len(errs))
	for i, e := range errs {
		// A header value cannot hold line breaks; libpcap messages have none,
		// but agents are not trusted to keep it so.
		msg := strings.NewReplacer("\r", " ", "\n", " ", ";", ",").Replace(e.Message)
		parts[i] = fmt.Sprintf("%d: %s", e.Index, msg)
	}
	return strings.Join(parts, "; ")
}
