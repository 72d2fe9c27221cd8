package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"reflect"
	"runtime"
	"strings"
	"testing"
)

func allMessages() []Message {
	return []Message{
		&Hello{MinVersion: 1, MaxVersion: 3, AgentID: "6a3c-cell", AgentVersion: "1.2.3", RunID: "run-1", CellIPs: []string{"10.0.16.5", "fd00::5"}, MaxCaptures: 5},
		&Welcome{Version: 1, APIID: "pcap-server-api/0", APIVersion: "1.2.3", CellIPs: []string{"10.0.16.5"}},
		&Refused{Reason: RefusedVersion, Message: "no common version", MinVersion: 1, MaxVersion: 1},
		&CaptureRequest{CaptureID: "c1", AppGUID: "app", ProcessType: "web", Index: 2, InstanceGUID: "inst", Device: "eth0", Filter: "tcp port 8080", Snaplen: 96, DurationMillis: 1500, MaxPackets: 10, Owner: "user-guid"},
		&Started{LinkType: 1, Snaplen: 96, Device: "eth0", Container: "handle"},
		&Error{Code: ErrBadFilter, Message: "syntax error"},
		&Stats{Counters: Counters{Packets: 1, Bytes: 2, KernelDropped: 3, InterfaceDropped: 4, AgentDropped: 5}},
		&Stop{Reason: EndClientGone},
		&End{Reason: EndDuration, Message: "m", Stats: Stats{Counters: Counters{Packets: 9}}},
		&StopCapture{CaptureID: "c1", AppGUID: "app", Requester: "user-guid", Admin: true},
		&StopResult{Outcome: StopStopping, Streams: 2},
		// Version 2: a capture of several devices.
		&CaptureRequest{CaptureID: "c2", AppGUID: "app", Index: 0, Device: "eth0", Devices: []string{"eth0", "lo"}, Snaplen: 65535, Owner: "user-guid"},
		&Started{LinkType: 1, Snaplen: 65535, Device: "eth0", Container: "handle", Devices: []DeviceStart{
			{Device: "eth0", LinkType: 1}, {Device: "nosuch0", Error: &Error{Code: ErrNoSuchDevice, Message: "no such device"}}}},
		&Stats{Counters: Counters{Packets: 3, Bytes: 300, KernelDropped: 1}, Devices: []Counters{{Packets: 1, Bytes: 100}, {Packets: 2, Bytes: 200, KernelDropped: 1}}},
		// Version 3: a BOSH VM's identity and a capture of the VM itself.
		&Hello{MinVersion: 1, MaxVersion: 3, AgentID: "6a3c-router", AgentVersion: "1.3.0", RunID: "run-2", CellIPs: []string{"10.0.1.5"}, MaxCaptures: 5,
			Bosh: &BoshInstance{Deployment: "cf", InstanceGroup: "router", ID: "6a3c-router", Index: 1, AZ: "z2"}, HostCapture: true},
		&CaptureRequest{CaptureID: "c3", Target: TargetHost, Bosh: &BoshInstance{Deployment: "cf", InstanceGroup: "router", ID: "6a3c-router", Index: 1, AZ: "z2"},
			Devices: []string{"eth0", "lo"}, Device: "eth0", Filter: "tcp port 443", Snaplen: 65535, Owner: "admin"},
		&Error{Code: ErrHostCaptureDisabled, Message: "host capture is not enabled on this VM"},
		&StopCapture{CaptureID: "c3", Target: TargetHost, Deployment: "cf", Requester: "admin", Admin: true},
	}
}

func TestMessagesRoundTrip(t *testing.T) {
	var stream bytes.Buffer
	w := NewWriter(&stream)
	msgs := allMessages()
	seen := map[Type]bool{}
	for _, m := range msgs {
		if err := w.WriteMessage(m); err != nil {
			t.Fatal(err)
		}
		seen[m.Type()] = true
	}
	for typ := Type(0); typ < 255; typ++ {
		if typ.Known() && typ != TypePackets && typ != TypeDevicePackets && !seen[typ] {
			t.Errorf("no round-trip case for %s", typ)
		}
	}
	r := NewReader(&stream)
	for _, want := range msgs {
		f, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		got, err := Decode(f)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: got %+v, want %+v", want.Type(), got, want)
		}
	}
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("after last frame: %v, want io.EOF", err)
	}
}

func TestExpect(t *testing.T) {
	var stream bytes.Buffer
	w := NewWriter(&stream)
	_ = w.WriteFrame(Type(200), []byte("future"))
	_ = w.WriteMessage(&Started{LinkType: 1})
	_ = w.WriteMessage(&Stop{})
	r := NewReader(&stream)
	s, err := Expect[Started](r)
	if err != nil || s.LinkType != 1 {
		t.Fatalf("Expect[Started] skipping an unknown frame = %+v, %v", s, err)
	}
	if _, err := Expect[Welcome](r); err == nil || !strings.Contains(err.Error(), "got stop frame") {
		t.Fatalf("Expect[Welcome] on a stop frame: %v", err)
	}
}

func TestPacketsRoundTrip(t *testing.T) {
	var b Batch
	want := []Packet{
		{Timestamp: 1700000000123456789, Length: 60, Data: bytes.Repeat([]byte{1}, 60)},
		{Timestamp: -5, Length: 1500, Data: bytes.Repeat([]byte{2}, 96)},
		{Timestamp: 0, Length: 0, Data: []byte{}},
	}
	for _, p := range want {
		if !b.Fits(len(p.Data)) {
			t.Fatal("small packets do not fit")
		}
		b.Append(p.Timestamp, p.Length, p.Data)
	}
	if b.Count() != 3 || b.Size() != 3*RecordHeaderSize+156 {
		t.Fatalf("count %d size %d", b.Count(), b.Size())
	}
	var stream bytes.Buffer
	if err := NewWriter(&stream).WriteBatch(&b); err != nil {
		t.Fatal(err)
	}
	f, err := NewReader(&stream).Next()
	if err != nil || f.Type != TypePackets {
		t.Fatalf("frame %v, %v", f.Type, err)
	}
	got, err := DecodePackets(f.Payload, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	b.Reset()
	if b.Count() != 0 || b.Size() != 0 {
		t.Fatal("Reset kept packets")
	}
}

// A batch of one device of several is a DevicePackets frame: the device
// index, then records as in a Packets payload.
func TestDevicePacketsRoundTrip(t *testing.T) {
	b := NewDeviceBatch(3, 1024)
	b.Append(7, 60, bytes.Repeat([]byte{7}, 60))
	spare := b.Spare()
	n := copy(spare, b.Frame()[HeaderSize+DeviceHeaderSize:]) // the same record again, as the agent's reader writes it
	b.Commit(n, 1)
	if b.Count() != 2 || b.Size() != 2*(RecordHeaderSize+60) || b.Cap() != 1024 {
		t.Fatalf("count %d size %d cap %d", b.Count(), b.Size(), b.Cap())
	}
	var stream bytes.Buffer
	if err := NewWriter(&stream).WriteBatch(b); err != nil {
		t.Fatal(err)
	}
	f, err := NewReader(&stream).Next()
	if err != nil || f.Type != TypeDevicePackets || len(f.Payload) != 1+b.Size() {
		t.Fatalf("frame %v of %d bytes, %v", f.Type, len(f.Payload), err)
	}
	dev, pkts, err := DecodeDevicePackets(f.Payload, nil)
	if err != nil || dev != 3 || len(pkts) != 2 || pkts[1].Timestamp != 7 || pkts[1].Length != 60 {
		t.Fatalf("device %d, packets %+v, %v", dev, pkts, err)
	}
	b.Reset()
	if b.Size() != 0 || b.Count() != 0 || len(b.Frame()) != HeaderSize+DeviceHeaderSize {
		t.Fatal("Reset kept packets or lost the device index")
	}
	for name, payload := range map[string][]byte{
		"empty":          {},
		"device too big": {MaxDevices},
		"bad record":     {0, 1, 2, 3},
	} {
		if _, _, err := DecodeDevicePackets(payload, nil); !errors.Is(err, ErrMalformedPackets) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestDeviceBatchFitsAtMaximum(t *testing.T) {
	b := NewDeviceBatch(1, 0)
	big := make([]byte, MaxSnaplen)
	for b.Fits(len(big)) {
		b.Append(1, len(big), big)
	}
	if len(b.Frame())-HeaderSize > MaxPayload {
		t.Fatalf("payload %d exceeds the maximum", len(b.Frame())-HeaderSize)
	}
}

func TestBatchFitsAtMaximum(t *testing.T) {
	var b Batch
	big := make([]byte, MaxSnaplen)
	n := 0
	for b.Fits(len(big)) {
		b.Append(1, len(big), big)
		n++
	}
	if n != MaxPayload/(MaxSnaplen+RecordHeaderSize) || b.Size() > MaxPayload {
		t.Fatalf("%d packets of MaxSnaplen fit, payload %d", n, b.Size())
	}
}

func TestDecodePacketsRejects(t *testing.T) {
	record := func(capLen, origLen uint32, data int) []byte {
		p := binary.BigEndian.AppendUint64(nil, 1)
		p = binary.BigEndian.AppendUint32(p, capLen)
		p = binary.BigEndian.AppendUint32(p, origLen)
		return append(p, make([]byte, data)...)
	}
	cases := map[string][]byte{
		"stray bytes":        {1, 2, 3},
		"truncated data":     record(10, 10, 9),
		"caplen > origlen":   record(10, 9, 10),
		"caplen > max":       record(MaxSnaplen+1, MaxSnaplen+1, 0),
		"good then bad tail": append(record(2, 2, 2), 9),
	}
	for name, payload := range cases {
		prev := []Packet{{Timestamp: 42}}
		got, err := DecodePackets(payload, prev)
		if !errors.Is(err, ErrMalformedPackets) {
			t.Errorf("%s: err %v", name, err)
		}
		if len(got) != 1 {
			t.Errorf("%s: a malformed frame added %d packets", name, len(got)-1)
		}
	}
}

func TestReaderRejectsOversizedFrameWithoutAllocating(t *testing.T) {
	hdr := appendHeader(nil, TypePackets, 0)
	binary.BigEndian.PutUint32(hdr[1:], 0xffffffff)
	r := NewReader(bytes.NewReader(hdr))
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := r.Next()
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("err %v", err)
	}
	if d := after.TotalAlloc - before.TotalAlloc; d > 64<<10 {
		t.Fatalf("rejecting a 4 GiB header allocated %d bytes", d)
	}
}

func TestReaderTruncated(t *testing.T) {
	var stream bytes.Buffer
	_ = NewWriter(&stream).WriteMessage(&Stop{Reason: EndRequested})
	full := stream.Bytes()
	for n := 1; n < len(full); n++ {
		_, err := NewReader(bytes.NewReader(full[:n])).Next()
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("%d of %d bytes: %v, want unexpected EOF", n, len(full), err)
		}
	}
}

func TestWriterRejectsOversizedPayload(t *testing.T) {
	var stream bytes.Buffer
	err := NewWriter(&stream).WriteFrame(TypeStats, make([]byte, MaxPayload+1))
	if !errors.Is(err, ErrFrameTooLarge) || stream.Len() != 0 {
		t.Fatalf("err %v, wrote %d bytes", err, stream.Len())
	}
}

func TestNegotiate(t *testing.T) {
	cases := []struct {
		min, max, want int
		ok             bool
	}{
		{1, 1, 1, true}, // an agent of version 1 keeps working
		{1, 2, 2, true}, // an agent of version 2 keeps working
		{1, 3, 3, true},
		{1, 7, 3, true}, // a newer agent that still speaks 3
		{2, 7, 3, true},
		{4, 7, 0, false},
		{0, 1, 0, false},
		{3, 2, 0, false},
	}
	for _, c := range cases {
		got, err := Negotiate(c.min, c.max)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("Negotiate(%d, %d) = %d, %v", c.min, c.max, got, err)
		}
	}
}

func TestCaptureRequestValidate(t *testing.T) {
	good := CaptureRequest{AppGUID: "a", Device: "eth0", Snaplen: 65535}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := map[string]func(*CaptureRequest){
		"no container":   func(r *CaptureRequest) { r.AppGUID = "" },
		"device slash":   func(r *CaptureRequest) { r.Device = "../x" },
		"device long":    func(r *CaptureRequest) { r.Device = "abcdefghijklmnop" },
		"device empty":   func(r *CaptureRequest) { r.Device = "" },
		"snaplen 0":      func(r *CaptureRequest) { r.Snaplen = 0 },
		"snaplen huge":   func(r *CaptureRequest) { r.Snaplen = MaxSnaplen + 1 },
		"filter long":    func(r *CaptureRequest) { r.Filter = strings.Repeat("x", MaxFilterLength+1) },
		"index negative": func(r *CaptureRequest) { r.Index = -1 },
		"duration neg":   func(r *CaptureRequest) { r.DurationMillis = -1 },
	}
	for name, mutate := range bad {
		r := good
		mutate(&r)
		if err := r.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	several := good
	several.Device, several.Devices = "", []string{"eth0", "lo"}
	if err := several.Validate(); err != nil || len(several.DeviceList()) != 2 {
		t.Fatalf("two devices: %v", err)
	}
	for name, devices := range map[string][]string{
		"twice":    {"eth0", "lo", "eth0"},
		"too many": {"a", "b", "c", "d", "e"},
		"bad name": {"eth0", "a/b"},
	} {
		r := several
		r.Devices = devices
		if err := r.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestCaptureRequestValidateHost(t *testing.T) {
	vm := BoshInstance{Deployment: "cf", InstanceGroup: "router", ID: "6a3c", Index: 0, AZ: "z1"}
	good := CaptureRequest{Target: TargetHost, Bosh: &vm, Device: "eth0", Snaplen: 65535}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	if !good.Host() {
		t.Fatal("a host request is not Host()")
	}
	bad := map[string]func(*CaptureRequest){
		"no instance":      func(r *CaptureRequest) { r.Bosh = nil },
		"names an app":     func(r *CaptureRequest) { r.AppGUID = "app" },
		"names a handle":   func(r *CaptureRequest) { r.InstanceGUID = "h" },
		"names a process":  func(r *CaptureRequest) { r.ProcessType = "web" },
		"unknown target":   func(r *CaptureRequest) { r.Target = "vm" },
		"no deployment":    func(r *CaptureRequest) { b := vm; b.Deployment = ""; r.Bosh = &b },
		"no group":         func(r *CaptureRequest) { b := vm; b.InstanceGroup = ""; r.Bosh = &b },
		"no id":            func(r *CaptureRequest) { b := vm; b.ID = ""; r.Bosh = &b },
		"negative index":   func(r *CaptureRequest) { b := vm; b.Index = -1; r.Bosh = &b },
		"slash in a group": func(r *CaptureRequest) { b := vm; b.InstanceGroup = "router/0"; r.Bosh = &b },
		"long id":          func(r *CaptureRequest) { b := vm; b.ID = strings.Repeat("a", 129); r.Bosh = &b },
		"control in az":    func(r *CaptureRequest) { b := vm; b.AZ = "z1\n"; r.Bosh = &b },
	}
	for name, mutate := range bad {
		r := good
		mutate(&r)
		if err := r.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	app := CaptureRequest{AppGUID: "a", Device: "eth0", Snaplen: 65535, Bosh: &vm}
	if err := app.Validate(); err == nil {
		t.Error("an app request naming a BOSH instance: accepted")
	}
}

func TestValidateHello(t *testing.T) {
	good := Hello{MinVersion: 1, MaxVersion: 1, AgentID: "a", CellIPs: []string{"10.0.0.1"}}
	if err := ValidateHello(&good); err != nil {
		t.Fatal(err)
	}
	for name, h := range map[string]Hello{
		"no id":  {AgentID: "", CellIPs: []string{"10.0.0.1"}},
		"no ips": {AgentID: "a"},
		"bad ip": {AgentID: "a", CellIPs: []string{"cell-1"}},
		"bad vm": {AgentID: "a", CellIPs: []string{"10.0.0.1"}, Bosh: &BoshInstance{Deployment: "cf", ID: "x"}},
	} {
		if err := ValidateHello(&h); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// An agent's answers fit in MaxControlPayload whatever texts they carry:
// the longest messages, of the characters JSON escapes the longest, on
// every device. The message itself is left as it was.
func TestAnswersFitTheControlFrameLimit(t *testing.T) {
	worst := strings.Repeat("<", 100000)
	started := &Started{LinkType: 1, Snaplen: MaxSnaplen, Device: "eth0", Container: worst}
	for k := range MaxDevices {
		started.Devices = append(started.Devices, DeviceStart{Device: fmt.Sprintf("dev%d", k), Error: &Error{Code: ErrGardenUnavailable, Message: worst}})
	}
	end := &End{Reason: EndError, Message: "line\n" + worst}
	for _, m := range []Message{started, &Error{Code: ErrInternal, Message: worst}, end} {
		p, err := Marshal(m)
		if err != nil || len(p) > MaxControlPayload {
			t.Fatalf("%s: %d bytes, %v", m.Type(), len(p), err)
		}
		back, err := Decode(Frame{Type: m.Type(), Payload: p})
		if err != nil {
			t.Fatal(err)
		}
		if e, ok := back.(*End); ok && (len(e.Message) > MaxMessage+3 || strings.Contains(e.Message, "\n")) {
			t.Fatalf("end message of %d bytes: %.40q", len(e.Message), e.Message)
		}
	}
	if started.Container != worst || started.Devices[0].Error.Message != worst || end.Message != "line\n"+worst {
		t.Fatal("Marshal changed the message it encoded")
	}
}
