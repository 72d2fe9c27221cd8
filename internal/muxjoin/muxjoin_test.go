package muxjoin

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"testing"

	"github.com/hashicorp/yamux"

	"github.com/cloudfoundry/pcap-server-release/internal/tlsbatch"
	"github.com/cloudfoundry/pcap-server-release/test/testpki"
)

// countingConn counts the writes that reach the network.
type countingConn struct {
	net.Conn
	mu     sync.Mutex
	writes int
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.writes++
	c.mu.Unlock()
	return c.Conn.Write(p)
}

func (c *countingConn) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.writes
}

// sessions are a yamux client over muxjoin over tlsbatch over a counted
// loopback TCP connection, and its server over plain crypto/tls.
func sessions(t *testing.T, join bool) (client, server *yamux.Session, counted *countingConn) {
	t.Helper()
	ca, err := testpki.NewCA("muxjoin test CA")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ca.Server("muxjoin.test")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := srv.TLS()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	counted = &countingConn{Conn: raw}
	tc := tlsbatch.Client(counted, &tls.Config{RootCAs: ca.Pool(), ServerName: "muxjoin.test", MinVersion: tls.VersionTLS13})
	ts := tls.Server(b, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13})
	errs := make(chan error, 1)
	go func() { errs <- ts.Handshake() }()
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	cfg := yamux.DefaultConfig()
	cfg.EnableKeepAlive = false
	cfg.LogOutput = io.Discard
	var conn io.ReadWriteCloser = tc
	if join {
		conn = New(tc)
	}
	if client, err = yamux.Client(conn, cfg); err != nil {
		t.Fatal(err)
	}
	if server, err = yamux.Server(ts, cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server, counted
}

// A stream's data frame reaches the network in one write, header and
// body, and the peer reads exactly what was written; frames without a
// body (the stream's opening, pings) are not held back.
func TestADataFrameIsOneNetworkWrite(t *testing.T) {
	for _, join := range []bool{false, true} {
		client, server, counted := sessions(t, join)
		opened, err := client.OpenStream()
		if err != nil {
			t.Fatal(err)
		}
		// The open is a header alone: were it held, the accept would
		// wait forever.
		if _, err := opened.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		accepted, err := server.AcceptStream()
		if err != nil {
			t.Fatal(err)
		}
		one := make([]byte, 1)
		if _, err := io.ReadFull(accepted, one); err != nil || one[0] != 'x' {
			t.Fatalf("first byte %q, %v", one, err)
		}
		if _, err := client.Ping(); err != nil {
			t.Fatalf("ping: %v", err)
		}
		data := make([]byte, 100<<10)
		_, _ = rand.Read(data)
		got := make(chan []byte, 1)
		go func() {
			b := make([]byte, len(data))
			_, _ = io.ReadFull(accepted, b)
			got <- b
		}()
		before := counted.count()
		if n, err := opened.Write(data); err != nil || n != len(data) {
			t.Fatalf("wrote %d, %v", n, err)
		}
		writes := counted.count() - before
		if !bytes.Equal(<-got, data) {
			t.Fatal("the peer read other bytes")
		}
		want := 2
		if join {
			want = 1
		}
		if writes != want {
			t.Errorf("join %v: %d network writes for a data frame, want %d", join, writes, want)
		}
	}
}

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
