package wire

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"
)

// stepReader returns at most step bytes per Read, as a yamux stream
// returns what has arrived, and counts what was read.
type stepReader struct {
	data []byte
	step int
	read int
}

func (s *stepReader) Read(p []byte) (int, error) {
	if s.read == len(s.data) {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), s.step)], s.data[s.read:])
	s.read += n
	return n, nil
}

// wholeCheck is what the checks of a whole payload say about it: its
// device index, record count or error.
func wholeCheck(typ Type, payload []byte) (int, int, error) {
	dev, records := 0, payload
	if typ == TypeDevicePackets {
		var err error
		if dev, records, err = DeviceRecords(payload); err != nil {
			return 0, 0, err
		}
	}
	count, err := CountPackets(records)
	return dev, count, err
}

// discardInput encodes a FuzzDiscardPackets input: the frame type in the
// low bit of the first byte, the read size in the rest of it.
func discardInput(typ Type, step int, payload []byte) []byte {
	b := byte((step - 1) << 1)
	if typ == TypeDevicePackets {
		b |= 1
	}
	return append([]byte{b}, payload...)
}

// discardSeeds are payloads of every shape DiscardPackets meets: records
// across read boundaries, an empty batch, a device batch, and each kind
// of malformed record.
func discardSeeds() [][]byte {
	var b Batch
	b.Append(1, 60, make([]byte, 60))
	b.Append(2, 1514, make([]byte, 96))
	b.Append(3, 1, []byte{7})
	good := bytes.Clone(b.Frame()[HeaderSize:])
	db := NewDeviceBatch(2, 0)
	db.Append(4, 60, make([]byte, 60))
	header := func(capLen, origLen uint32) []byte {
		h := make([]byte, RecordHeaderSize)
		h[8], h[9], h[10], h[11] = byte(capLen>>24), byte(capLen>>16), byte(capLen>>8), byte(capLen)
		h[12], h[13], h[14], h[15] = byte(origLen>>24), byte(origLen>>16), byte(origLen>>8), byte(origLen)
		return h
	}
	return [][]byte{
		discardInput(TypePackets, 7, good),
		discardInput(TypePackets, 128, good),
		discardInput(TypePackets, 1, nil),
		discardInput(TypeDevicePackets, 5, bytes.Clone(db.Frame()[HeaderSize:])),
		discardInput(TypeDevicePackets, 1, []byte{MaxDevices}),
		discardInput(TypeDevicePackets, 1, nil),
		discardInput(TypePackets, 3, append(bytes.Clone(good), 1, 2, 3)),
		discardInput(TypePackets, 16, header(MaxSnaplen+1, MaxSnaplen+1)),
		discardInput(TypePackets, 16, header(10, 9)),
		discardInput(TypePackets, 16, append(header(10, 10), 1, 2)),
	}
}

// FuzzDiscardPackets checks the streaming check of a frame the API does
// not keep against the checks of a whole payload: for every payload,
// however the stream cuts it, the same device, count or error, and never
// a byte read beyond the frame.
func FuzzDiscardPackets(f *testing.F) {
	for _, seed := range discardSeeds() {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		typ := TypePackets
		if data[0]&1 == 1 {
			typ = TypeDevicePackets
		}
		step := int(data[0]>>1) + 1
		payload := data[1:]
		wantDev, wantCount, wantErr := wholeCheck(typ, payload)
		// What follows the frame must stay unread.
		src := &stepReader{data: append(bytes.Clone(payload), "next frame"...), step: step}
		buf := make([]byte, MinDiscardBuffer+step%40)
		dev, count, err := NewReader(src).DiscardPackets(typ, len(payload), buf)
		if src.read > len(payload) {
			t.Fatalf("read %d bytes of a %d-byte frame", src.read, len(payload))
		}
		if wantErr != nil {
			if err == nil || err.Error() != wantErr.Error() || !errors.Is(err, ErrMalformedPackets) {
				t.Fatalf("error %v, want %v", err, wantErr)
			}
			return
		}
		if err != nil || dev != wantDev || count != wantCount {
			t.Fatalf("device %d, %d records, %v; want device %d, %d records", dev, count, err, wantDev, wantCount)
		}
		if src.read != len(payload) {
			t.Fatalf("read %d bytes of a %d-byte frame", src.read, len(payload))
		}
	})
}

func TestDiscardPacketsOfACutStreamIsAnUnexpectedEOF(t *testing.T) {
	var b Batch
	for i := range 10 {
		b.Append(int64(i), 100, make([]byte, 100))
	}
	payload := b.Frame()[HeaderSize:]
	for _, cut := range []int{0, 5, RecordHeaderSize + 50, len(payload) - 1} {
		r := NewReader(&stepReader{data: payload[:cut], step: 64})
		_, _, err := r.DiscardPackets(TypePackets, len(payload), make([]byte, 32))
		if !errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, ErrMalformedPackets) {
			t.Fatalf("cut at %d: %v", cut, err)
		}
		want := fmt.Sprintf("read packets frame payload of %d bytes", len(payload))
		if !bytes.Contains([]byte(err.Error()), []byte(want)) {
			t.Fatalf("cut at %d: %q does not say %q", cut, err, want)
		}
	}
}

// Discard drops exactly the frame, through the buffer it is given, and
// the next frame reads as if nothing happened.
func TestDiscardLeavesTheNextFrame(t *testing.T) {
	var stream bytes.Buffer
	w := NewWriter(&stream)
	if err := w.WriteFrame(Type(99), bytes.Repeat([]byte{1}, 100000)); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteMessage(&Stop{Reason: EndDuration}); err != nil {
		t.Fatal(err)
	}
	r := NewReader(&stepReader{data: stream.Bytes(), step: 1000})
	typ, n, err := r.NextHeader()
	if err != nil || typ != Type(99) || n != 100000 {
		t.Fatalf("%s %d %v", typ, n, err)
	}
	if err := r.Discard(typ, n, make([]byte, 64)); err != nil {
		t.Fatal(err)
	}
	if r.buf != nil {
		t.Fatal("the reader allocated a buffer for a discarded frame")
	}
	if s, err := Expect[Stop](r); err != nil || s.Reason != EndDuration {
		t.Fatalf("next frame: %+v %v", s, err)
	}
}
