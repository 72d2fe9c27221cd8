// Package muxjoin gives yamux a connection that sends each data frame's
// header together with its body.
//
// yamux's send loop writes a frame as two Writes: the 12-byte header,
// then the body. Over the tunnel each Write is its own socket write, so
// every batch of packets cost the agent two system calls and the API two
// wakeups, the first for 12 bytes. Conn holds a data frame's header
// until the body's Write and hands both to the TLS connection at once
// (tlsbatch.Conn.WriteJoined: two records, one socket write). The bytes
// on the wire are the same; only the writes are fewer.
package muxjoin

import (
	"encoding/binary"
	"net"
	"sync"
)

// JoinWriter writes two pieces as one network write.
type JoinWriter interface {
	net.Conn
	WriteJoined(first, second []byte) (int, error)
}

// yamux's framing (spec.md in hashicorp/yamux): version 0,
// type 0 is data, and the last four bytes of the header, big-endian, are
// the length of the body that follows.
const (
	headerSize = 12
	version    = 0
	typeData   = 0
)

// Conn is a JoinWriter for yamux.
type Conn struct {
	JoinWriter
	mu   sync.Mutex
	held [headerSize]byte
	// want is the body length of the held header; 0: none held.
	want int
}

// New wraps c.
func New(c JoinWriter) *Conn { return &Conn{JoinWriter: c} }

// Write passes p on, except that a data frame's header waits for the
// next Write, its body. A next Write that is not the body announced
// (yamux always sends the body next, so this is only a safeguard) sends
// the held header alone first: the byte stream never changes.
func (c *Conn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.want > 0 {
		want := c.want
		c.want = 0
		if len(p) == want {
			n, err := c.JoinWriter.WriteJoined(c.held[:], p)
			return max(n-headerSize, 0), err
		}
		if _, err := c.JoinWriter.Write(c.held[:]); err != nil {
			return 0, err
		}
	}
	if n := bodyLen(p); n > 0 {
		copy(c.held[:], p)
		c.want = n
		return len(p), nil
	}
	return c.JoinWriter.Write(p)
}

// bodyLen is the body length p announces if p is exactly a data frame's
// header with a body, else 0.
func bodyLen(p []byte) int {
	if len(p) != headerSize || p[0] != version || p[1] != typeData {
		return 0
	}
	return int(binary.BigEndian.Uint32(p[8:12]))
}
