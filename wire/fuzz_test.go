package wire

import (
	"bytes"
	"testing"
)

// FuzzReader feeds arbitrary bytes to the frame reader and decodes every
// frame it returns the way the API and the agent do. It must never panic,
// never hold a buffer beyond the frame cap, and every packet it decodes
// must lie inside its frame.
func FuzzReader(f *testing.F) {
	var stream bytes.Buffer
	w := NewWriter(&stream)
	for _, m := range allMessages() {
		_ = w.WriteMessage(m)
		f.Add(bytes.Clone(stream.Bytes()))
	}
	var b Batch
	b.Append(1, 60, make([]byte, 60))
	b.Append(2, 1500, make([]byte, 96))
	_ = w.WriteBatch(&b)
	f.Add(bytes.Clone(stream.Bytes()))
	db := NewDeviceBatch(1, 256)
	db.Append(3, 60, make([]byte, 60))
	_ = w.WriteBatch(db)
	f.Add(bytes.Clone(stream.Bytes()))

	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewReader(bytes.NewReader(data))
		var pkts []Packet
		for range 1000 {
			fr, err := r.Next()
			if err != nil {
				break
			}
			if cap(r.buf) > MaxPayload {
				t.Fatalf("reader buffer grew to %d", cap(r.buf))
			}
			switch {
			case fr.Type == TypePackets || fr.Type == TypeDevicePackets:
				records := fr.Payload
				if fr.Type == TypeDevicePackets {
					var dev int
					dev, pkts, err = DecodeDevicePackets(fr.Payload, pkts[:0])
					if err == nil && (dev < 0 || dev >= MaxDevices) {
						t.Fatalf("device index %d accepted", dev)
					}
					records = fr.Payload[min(len(fr.Payload), DeviceHeaderSize):]
				} else {
					pkts, err = DecodePackets(fr.Payload, pkts[:0])
				}
				if err == nil {
					total := 0
					for _, p := range pkts {
						total += RecordHeaderSize + len(p.Data)
						if len(p.Data) > p.Length {
							t.Fatalf("packet data %d longer than its length %d", len(p.Data), p.Length)
						}
					}
					if total != len(records) {
						t.Fatalf("packets cover %d of %d record bytes", total, len(records))
					}
				}
			case fr.Type.Known():
				m, err := Decode(fr)
				if err == nil && m.Type() != fr.Type {
					t.Fatalf("decoded %s from a %s frame", m.Type(), fr.Type)
				}
				if req, ok := m.(*CaptureRequest); ok && req.Validate() == nil {
					if len(req.DeviceList()) > MaxDevices {
						t.Fatalf("%d devices accepted", len(req.DeviceList()))
					}
					// A valid host request names a valid VM and no app; a
					// valid app request names no VM.
					if req.Host() && (req.Bosh == nil || req.Bosh.Validate() != nil || req.AppGUID != "") {
						t.Fatalf("host request %+v accepted", req)
					}
					if !req.Host() && req.Bosh != nil {
						t.Fatalf("app request naming VM %+v accepted", req.Bosh)
					}
				}
				// What the API keeps of an instance stays small.
				var devices int
				switch v := m.(type) {
				case *Stats:
					devices = len(v.Devices)
				case *End:
					devices = len(v.Stats.Devices)
				case *Started:
					devices = len(v.Devices)
					if len(v.Container) > maxContainer {
						t.Fatalf("container of %d bytes accepted", len(v.Container))
					}
				}
				if devices > MaxDevices {
					t.Fatalf("%s of %d devices accepted", fr.Type, devices)
				}
				if h, ok := m.(*Hello); ok && ValidateHello(h) == nil && h.Bosh != nil && h.Bosh.Validate() != nil {
					t.Fatalf("hello with an invalid BOSH identity %+v accepted", h.Bosh)
				}
			}
		}
	})
}

// FuzzDecodePackets checks the record parser on its own, where the fuzzer
// can reach deep record chains faster than through frame headers.
func FuzzDecodePackets(f *testing.F) {
	var b Batch
	b.Append(1, 3, []byte{1, 2, 3})
	b.Append(2, 10, []byte{4})
	f.Add(b.Frame()[HeaderSize:])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, payload []byte) {
		pkts, err := DecodePackets(payload, nil)
		if err != nil {
			if len(pkts) != 0 {
				t.Fatalf("error with %d packets", len(pkts))
			}
			return
		}
		var re Batch
		for _, p := range pkts {
			re.Append(p.Timestamp, p.Length, p.Data)
		}
		if !bytes.Equal(re.Frame()[HeaderSize:], payload) {
			t.Fatal("re-encoding a decoded payload changed it")
		}
	})
}

// FuzzDecodeDevicePackets checks the parser of DevicePackets payloads: a
// device index below MaxDevices, then records.
func FuzzDecodeDevicePackets(f *testing.F) {
	for _, seed := range devicePacketsSeeds() {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		dev, pkts, err := DecodeDevicePackets(payload, nil)
		if err != nil {
			if len(pkts) != 0 {
				t.Fatalf("error with %d packets", len(pkts))
			}
			return
		}
		if dev < 0 || dev >= MaxDevices {
			t.Fatalf("device index %d accepted", dev)
		}
		re := NewDeviceBatch(dev, 0)
		for _, p := range pkts {
			re.Append(p.Timestamp, p.Length, p.Data)
		}
		if !bytes.Equal(re.Frame()[HeaderSize:], payload) {
			t.Fatal("re-encoding a decoded payload changed it")
		}
	})
}

// devicePacketsSeeds are DevicePackets payloads: two records of device 1,
// an empty batch of the last device, and an index beyond MaxDevices.
func devicePacketsSeeds() [][]byte {
	b := NewDeviceBatch(1, 0)
	b.Append(1, 3, []byte{1, 2, 3})
	b.Append(2, 10, []byte{4})
	return [][]byte{
		bytes.Clone(b.Frame()[HeaderSize:]),
		bytes.Clone(NewDeviceBatch(MaxDevices-1, 0).Frame()[HeaderSize:]),
		{MaxDevices, 0},
	}
}
