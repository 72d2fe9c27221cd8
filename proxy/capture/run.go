package capture

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/gopacket/gopacket/layers"

	"github.com/cloudfoundry/pcap-server-release/internal/muxconfig"
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
	// Instance is the target's Instance().
	Instance string
	Reason   wire.EndReason
	Message  string
	Stats    wire.Stats
	APIDrop  uint64
	// CountsUnknown, when set, says why the agent's final counters never
	// arrived: Stats are then the last ones it sent, and its drops may be
	// more.
	CountsUnknown string
}

// CountsUnknown lists the instances whose final counters never arrived,
// with why: the totals are then a lower bound.
func (r Result) CountsUnknown() []*InstanceError {
	var out []*InstanceError
	for _, ir := range r.Instances {
		if ir.CountsUnknown != "" {
			out = append(out, &InstanceError{Instance: ir.Instance, Message: ir.CountsUnknown})
		}
	}
	return out
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
	r.merge = newMerger(len(s.sources), holdTime)
	defer r.close()
	if err := r.open(); err != nil {
		s.log.Warn("write capture header", "error", err)
		r.decide(wire.EndClientGone)
		r.writing = false
	}
	// The readers run since each instance started.
	r.loop(ctx, stop)
	return r.result()
}

// run is the state of one Run.
type run struct {
	*Session
	cw          *countingWriter
	flushClient func() error
	out         *output
	merge       *merger // the loop's alone
	start       time.Time

	packets uint64
	planned int64 // bytes written or encoded for the client
	// What the metrics have counted so far.
	reportedPackets uint64
	reportedBytes   int64
	writing         bool // false once the client is gone or a limit is hit
	clientLost      bool // the client is gone: nothing more reaches it
	reason          wire.EndReason
	stopping        bool
	// stopTimedOut: the agents did not all end within the stop timeout.
	stopTimedOut bool
}

// writeChunk is how much encoded output is sent in one write.
const writeChunk = 256 << 10

func (r *run) open() error {
	var err error
	if r.req.Format == FormatPcapng {
		ifaces := make([]ngInterface, len(r.sources))
		for i, src := range r.sources {
			ifaces[i] = ngInterface{
				name:        r.interfaceName(src),
				description: interfaceDescription(src),
				filter:      r.req.Filter,
				linkType:    layers.LinkType(src.linkType),
				snaplen:     src.inst.started.Snaplen,
			}
		}
		r.out, err = newPcapngOutput(ifaces)
	} else {
		first := r.sources[0]
		r.out, err = newPcapOutput(first.inst.started.Snaplen, layers.LinkType(first.linkType))
	}
	if err == nil {
		r.planned = int64(r.out.pending())
		err = r.flush()
	}
	r.report()
	r.writing = err == nil
	return err
}

// interfaceName names a source's pcapng interface: the target's name for
// the device.
func (r *run) interfaceName(src *source) string {
	return src.inst.target.InterfaceName(src.device, len(r.req.Devices) > 1)
}

// interfaceDescription says what a source is, for Wireshark's interface
// list and frame.interface_description.
func interfaceDescription(src *source) string {
	return src.inst.target.InterfaceDescription(src.device, src.inst.started)
}

// report counts what reached the client since the last report.
func (r *run) report() {
	r.opts.Metrics.Streamed(int(r.packets-r.reportedPackets), int(r.cw.n-r.reportedBytes))
	r.reportedPackets, r.reportedBytes = r.packets, r.cw.n
}

// flush writes what is encoded and pushes it to the client.
func (r *run) flush() error {
	if r.out.pending() == 0 {
		return nil
	}
	if err := r.out.writeTo(r.cw); err != nil {
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
		case <-r.inbox.wake:
		case <-hold.C:
		case now := <-statsTick.C:
			// Room stays for the last statistics, which close the file.
			if r.writing && r.req.Format == FormatPcapng && (r.req.MaxBytes == 0 || r.planned+2*r.statsRound() <= r.req.MaxBytes) {
				r.writeInterfaceStats(now)
				if err := r.flush(); err != nil {
					r.clientGone(err)
				}
				r.report()
			}
		case <-stopDeadline:
			r.log.Warn("agents did not end in time after stop", "timeout", r.opts.StopTimeout.String())
			r.stopTimedOut = true
			// What arrived still goes out, in order, without waiting for
			// the agents that do not end.
			r.inbox.takeInto(r.merge, r.frames.put)
			r.merge.hold = 0
			r.write(time.Now())
			return
		}
		if r.stoppedByAgent.Load() {
			r.decide(wire.EndRequested)
		}
		if r.stopping && stopDeadline == nil {
			t := time.NewTimer(r.opts.StopTimeout)
			defer t.Stop()
			stopDeadline = t.C
		}
		r.inbox.takeInto(r.merge, r.frames.put)
		if next := r.write(time.Now()); next > 0 {
			hold.Reset(next)
		}
		if r.merge.done() {
			return
		}
	}
}

// write sends the packets that are safe to send, in order, enforcing the
// packet and byte limits. It returns how long until a held packet may go
// (0: none is held).
func (r *run) write(now time.Time) time.Duration {
	release := r.frames.put
	if !r.writing {
		r.merge.discardAll(release)
		return 0
	}
	wrote := false
	for r.writing {
		run, wait, ok := r.merge.next(now)
		if !ok {
			r.endWrite(wrote)
			return wait
		}
		wrote = true
		r.writeRun(run)
		r.merge.written(run.src, release)
	}
	r.merge.discardAll(release)
	r.endWrite(wrote)
	return 0
}

// writeRun encodes the records of one run. In classic pcap a frame's
// records become the file's where they are (pcap and wire record headers
// are both 16 bytes), and go out from the frame in one piece: no copy per
// record into the output buffer.
func (r *run) writeRun(run mergeRun) {
	f := run.f
	inPlace := r.out.format == FormatPcap
	start := f.off
	for f.left > 0 {
		rec := f.head()
		if rec.Timestamp > run.until {
			break
		}
		if r.req.MaxPackets > 0 && r.packets >= r.req.MaxPackets {
			r.decide(wire.EndPackets)
			r.writing = false
			break
		}
		size := r.out.size(rec.CapLen)
		if r.req.MaxBytes > 0 && r.planned+size+r.statsRound() > r.req.MaxBytes {
			r.decide(wire.EndMaxBytes)
			r.writing = false
			break
		}
		if inPlace {
			putPcapRecordHeader(f.buf[f.off:], rec)
		} else {
			data := f.buf[f.off+wire.RecordHeaderSize : f.off+rec.Size()]
			r.out.appendPacket(run.src, rec, data)
		}
		f.off += rec.Size()
		f.left--
		r.planned += size
		r.packets++
		if !inPlace && r.out.pending() >= writeChunk {
			if err := r.out.writeTo(r.cw); err != nil {
				r.clientGone(err)
				return
			}
		}
	}
	if inPlace && f.off > start {
		r.writeRecords(f.buf[start:f.off])
	}
}

// directWrite is the least a run of records must hold to be written from
// its frame; a shorter one (instances that take turns packet by packet)
// joins the output buffer, so that writes stay large.
const directWrite = 64 << 10

// writeRecords sends records already in the file's format, after what
// the output buffer holds.
func (r *run) writeRecords(b []byte) {
	if len(b) < directWrite {
		r.out.appendRecords(b)
		if r.out.pending() < writeChunk {
			return
		}
		b = nil
	}
	if err := r.out.writeTo(r.cw); err != nil {
		r.clientGone(err)
		return
	}
	if len(b) > 0 {
		if _, err := r.cw.Write(b); err != nil {
			r.clientGone(err)
		}
	}
}

// endWrite pushes what this round encoded to the client.
func (r *run) endWrite(wrote bool) {
	if !wrote && r.out.pending() == 0 {
		return
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
	r.writing, r.clientLost = false, true
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
		r.writing, r.clientLost = false, true
	}
	for _, inst := range r.instances {
		// A stalled tunnel may block a write for yamux's write timeout;
		// the loop must go on meanwhile. close waits for these too.
		r.readers.Go(func() {
			if err := inst.w.WriteMessage(&wire.Stop{Reason: reason}); err != nil {
				r.log.Debug("send stop", "instance", inst.target.Instance(), "error", err)
			}
		})
	}
}

// read consumes one instance's stream until its End or its failure,
// from the instance's Started on. Packets frames are read straight into
// frames of the capture's budget; a frame the budget has no room for is
// read through the instance's buffer, checked, counted as dropped and
// not kept. Control frames are read into the instance's buffer.
func (s *Session) read(inst *instance) {
	defer s.inbox.end(inst)
	defer inst.letGo()
	warned := false
	for {
		typ, n, err := inst.r.NextHeader()
		if err != nil {
			s.instanceEnded(inst, nil, err)
			return
		}
		switch {
		case typ == wire.TypePackets || typ == wire.TypeDevicePackets:
			err = s.readPackets(inst, typ, n)
		case typ == wire.TypeStats || typ == wire.TypeEnd:
			var payload []byte
			payload, err = inst.readControl(typ, n)
			if err != nil {
				break
			}
			var m wire.Message
			if m, err = wire.Decode(wire.Frame{Type: typ, Payload: payload}); err != nil {
				break
			}
			if st, ok := m.(*wire.Stats); ok {
				s.updateStats(inst, st)
				break
			}
			inst.mu.Lock()
			inst.final = true
			inst.mu.Unlock()
			s.instanceEnded(inst, m.(*wire.End), nil)
			return
		default:
			// Logged once: an agent must not fill the log.
			if !warned {
				warned = true
				if typ.Known() {
					s.log.Warn("unexpected frame from agent, skipping it and any more", "instance", inst.target.Instance(), "type", typ)
				} else {
					s.log.Debug("skipping unknown frames", "instance", inst.target.Instance(), "type", typ)
				}
			}
			err = inst.r.Discard(typ, n, inst.buf)
		}
		if err != nil {
			// The stream is broken: close it at once, so that the
			// agent stops capturing for nobody.
			_ = inst.stream.Close()
			s.instanceEnded(inst, &wire.End{Reason: wire.EndError, Message: err.Error(), Stats: inst.snapshot()}, nil)
			return
		}
	}
}

// readPackets reads a Packets or DevicePackets payload of n bytes and
// queues it for its source, or drops it when the capture's buffer is
// full. Only a malformed payload is an error.
func (s *Session) readPackets(inst *instance, typ wire.Type, n int) error {
	f := s.frames.get(n)
	if f == nil {
		return s.dropPackets(inst, typ, n)
	}
	err := inst.r.ReadPayload(typ, f.buf)
	var src *source
	var off, count int
	if err == nil {
		src, off, err = inst.frameSource(typ, f.buf)
	}
	if err == nil {
		count, err = wire.CountPackets(f.buf[off:])
	}
	if err != nil || count == 0 {
		s.frames.put(f)
		return err
	}
	f.off, f.left, f.arrived = off, count, time.Now()
	s.inbox.push(src, f)
	return nil
}

// dropPackets reads a packets frame the budget has no room for through
// the instance's buffer, checks it as readPackets would, and counts its
// records as dropped by the API.
func (s *Session) dropPackets(inst *instance, typ wire.Type, n int) error {
	if err := inst.checkFrameType(typ); err != nil {
		return err
	}
	dev, count, err := inst.r.DiscardPackets(typ, n, inst.buf)
	if err != nil {
		return err
	}
	src, err := inst.deviceSource(typ, dev)
	if err != nil {
		return err
	}
	src.apiDrop.Add(uint64(count))
	s.opts.Metrics.Drop(apimetrics.DropAPI, uint64(count))
	return nil
}

// letGo closes the stream of an instance whose reader is done, having
// read what it still held: nothing would read it any more, and yamux
// would keep it until the agent closes its side. What the agent sends
// afterwards is dropped on arrival (tunnel.Unread). The reads are bounded:
// an agent that goes on sending cannot keep the reader.
func (i *instance) letGo() {
	_ = i.stream.SetReadDeadline(time.Now())
	for n := 0; n < 2*muxconfig.APIStreamWindow; {
		k, err := i.stream.Read(i.buf)
		if err != nil {
			break
		}
		n += k
	}
	_ = i.stream.Close()
}

// snapshot is the instance's counters so far.
func (i *instance) snapshot() wire.Stats {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.stats
}

// updateStats records an instance's counters and counts the new drops.
func (s *Session) updateStats(inst *instance, st *wire.Stats) {
	inst.mu.Lock()
	prev := inst.stats
	inst.stats = *st
	inst.mu.Unlock()
	s.opts.Metrics.Drop(apimetrics.DropKernel, delta(st.KernelDropped+st.InterfaceDropped, prev.KernelDropped+prev.InterfaceDropped))
	s.opts.Metrics.Drop(apimetrics.DropAgent, delta(st.AgentDropped, prev.AgentDropped))
}

// delta of cumulative counters; a counter that went back (it cannot, but
// the agent is not trusted) adds nothing.
func delta(now, before uint64) uint64 {
	if now < before {
		return 0
	}
	return now - before
}

func (s *Session) instanceEnded(inst *instance, end *wire.End, err error) {
	if inst.aborted.Load() {
		return
	}
	if end != nil {
		if !end.Reason.Valid() {
			end.Reason = wire.EndError
		}
		end.Message = wire.ClipMessage(end.Message)
		s.updateStats(inst, &end.Stats)
	}
	inst.mu.Lock()
	inst.end, inst.err, inst.endAt = end, err, time.Now()
	reason := inst.reasonLocked()
	inst.mu.Unlock()
	s.endMu.Lock()
	s.lastEnd = reason
	s.endMu.Unlock()
	if reason == wire.EndRequested {
		// Not asked for by this replica (it would be stopping already):
		// the owner stopped the capture through another replica, which
		// reached only the agents it could.
		s.stoppedByAgent.Store(true)
	}
	log := s.log.With("instance", inst.target.Instance(), "reason", reason)
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
	for _, inst := range r.instances {
		var apiDrop uint64
		for _, id := range inst.sourceIDs() {
			apiDrop += r.sources[id].apiDrop.Load()
		}
		inst.mu.Lock()
		inst.countsUnknown = r.whyCountsUnknown(inst)
		ir := InstanceResult{Instance: inst.target.Instance(), Reason: inst.reasonLocked(), Stats: inst.stats, APIDrop: apiDrop,
			CountsUnknown: inst.countsUnknown}
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
	// The last statistics close the file, also after a limit (packets
	// left room for them), unless the client is gone.
	if !r.clientLost {
		r.writeInterfaceStats(time.Now())
	}
	if !r.clientLost {
		_ = r.flush()
	}
	r.report()
	res.Bytes = r.cw.n
	return res
}

// whyCountsUnknown says why the instance's final counters are missing,
// or "" when its End brought them. inst.mu is held.
func (r *run) whyCountsUnknown(inst *instance) string {
	switch {
	case inst.final:
		return ""
	case inst.end != nil:
		return "its stream from the agent broke off: " + inst.end.Message
	case inst.err != nil && !errors.Is(inst.err, io.EOF):
		return "the connection to its agent broke before the agent sent them: " + wire.ClipMessage(inst.err.Error())
	case inst.err != nil:
		return "its agent closed the stream without sending them"
	case r.stopTimedOut:
		return fmt.Sprintf("its agent did not answer the stop within %s", r.opts.StopTimeout)
	}
	return "the capture ended before its agent sent them"
}

// statsRound is the size of one round of interface statistics: what
// writeInterfaceStats adds to the file. Packets leave room for the last
// round, so that max_bytes holds with it.
func (r *run) statsRound() int64 {
	if r.req.Format != FormatPcapng {
		return 0
	}
	return int64(len(r.sources)) * isbSize
}

// writeInterfaceStats writes every source's counters so far (pcapng
// only): a reader following the stream, the CLI among them, sees the
// drops while the capture runs, and the last ones close the file.
func (r *run) writeInterfaceStats(now time.Time) {
	before := r.out.pending()
	defer func() { r.planned += int64(r.out.pending() - before) }()
	// A comment is beyond the room kept for statistics: it goes only
	// where max_bytes still holds with it.
	withComments := r.req.MaxBytes == 0 || r.planned+r.statsRound()+int64(len(r.sources))*maxCommentCost <= r.req.MaxBytes
	for _, src := range r.sources {
		src.inst.mu.Lock()
		st := src.counters(src.inst.stats)
		unknown := src.inst.countsUnknown
		src.inst.mu.Unlock()
		apiDrop := src.apiDrop.Load()
		var comment string
		if unknown != "" && withComments {
			// Wireshark shows the comment beside the counters: they are
			// what was known, not what happened.
			comment = clipTo("final counts unknown, drops are at least these: "+unknown, maxComment-len("..."))
		}
		err := r.out.appendStats(src.id, ifaceStats{
			// The agent's counters may lag behind the API's drops.
			delivered: delta(st.Packets, apiDrop),
			dropped:   st.KernelDropped + st.InterfaceDropped + st.AgentDropped + apiDrop,
			start:     r.start,
			end:       now,
			comment:   comment,
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
		parts[i] = fmt.Sprintf("%s: %s", e.Instance, msg)
	}
	return strings.Join(parts, "; ")
}

// clipTo keeps at most n bytes of s, and says "..." where it cut.
func clipTo(s string, n int) string {
	if len(s) > n {
		s = strings.ToValidUTF8(s[:n], "") + "..."
	}
	return s
}
