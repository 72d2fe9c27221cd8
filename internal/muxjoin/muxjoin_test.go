package muxjoin

import (
	"bytes"
	"encoding/binary"
	"net"
	"testing"
)

// A data frame through a real yamux session over tlsbatch is one network
// write: internal/tlsbatch's TestAYamuxDataFrameIsOneNetworkWrite.

// recorder records what reaches it, and how.
type recorder struct {
	net.Conn
	writes [][]byte
}

func (r *recorder) Write(p []byte) (int, error) {
	r.writes = append(r.writes, bytes.Clone(p))
	return len(p), nil
}

func (r *recorder) WriteJoined(first, second []byte) (int, error) {
	r.writes = append(r.writes, append(bytes.Clone(first), second...))
	return len(first) + len(second), nil
}

func header(typ byte, length uint32) []byte {
	h := make([]byte, headerSize)
	h[1] = typ
	binary.BigEndian.PutUint32(h[4:8], 3) // stream id
	binary.BigEndian.PutUint32(h[8:12], length)
	return h
}

// Whatever comes after a held header, the bytes keep their order, and
// each Write reports its own length.
func TestTheByteStreamNeverChanges(t *testing.T) {
	r := &recorder{}
	c := New(r)
	var want []byte
	write := func(p []byte) {
		t.Helper()
		want = append(want, p...)
		if n, err := c.Write(p); n != len(p) || err != nil {
			t.Fatalf("Write(%d bytes) = %d, %v", len(p), n, err)
		}
	}
	write(header(typeData, 5))
	write([]byte("hello")) // the body: joined
	write(header(typeData, 5))
	write([]byte("not five bytes")) // not the body announced: the header first, alone
	write(header(1, 7))             // a window update: not held
	write(header(typeData, 0))      // a data frame without a body: not held
	write(header(typeData, 3))
	write([]byte("abc"))
	if got := bytes.Join(r.writes, nil); !bytes.Equal(got, want) {
		t.Fatalf("the stream changed:\n got %q\nwant %q", got, want)
	}
	if len(r.writes) != 6 {
		t.Errorf("%d writes, want 6 (two joined, one header sent alone)", len(r.writes))
	}
}
