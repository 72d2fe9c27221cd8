package tlsbatch

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/cloudfoundry/pcap-server-release/internal/muxjoin"
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

func pair(t *testing.T) (client *Conn, server *tls.Conn, counted *countingConn) {
	t.Helper()
	ca, err := testpki.NewCA("tlsbatch test CA")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ca.Server("tlsbatch.test")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := srv.TLS()
	if err != nil {
		t.Fatal(err)
	}
	a, b := net.Pipe()
	counted = &countingConn{Conn: a}
	client = Client(counted, &tls.Config{RootCAs: ca.Pool(), ServerName: "tlsbatch.test", MinVersion: tls.VersionTLS13})
	server = tls.Server(b, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13})
	errs := make(chan error, 1)
	go func() { errs <- server.Handshake() }()
	if err := client.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server, counted
}

// A write of many records reaches the network as one write, and the
// peer reads exactly what was written.
func TestRecordsOfAWriteGoOutTogether(t *testing.T) {
	client, server, counted := pair(t)
	data := make([]byte, 160<<10) // ten records and some
	_, _ = rand.Read(data)
	got := make(chan []byte, 1)
	go func() {
		b := make([]byte, len(data))
		_, _ = io.ReadFull(server, b)
		got <- b
	}()
	before := counted.count()
	if n, err := client.Write(data); err != nil || n != len(data) {
		t.Fatalf("wrote %d, %v", n, err)
	}
	if w := counted.count() - before; w != 1 {
		t.Fatalf("%d network writes for one Write of %d bytes", w, len(data))
	}
	if !bytes.Equal(<-got, data) {
		t.Fatal("the peer read other bytes")
	}
}

// Writes from several goroutines keep whole, in some order.
func TestConcurrentWritesStayWhole(t *testing.T) {
	client, server, _ := pair(t)
	const writers, size = 4, 40 << 10
	done := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(server, writers*size))
		done <- b
	}()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			if _, err := client.Write(bytes.Repeat([]byte{byte('a' + w)}, size)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	b := <-done
	if len(b) != writers*size {
		t.Fatalf("read %d bytes", len(b))
	}
	for off := 0; off < len(b); off += size {
		if chunk := b[off : off+size]; !bytes.Equal(chunk, bytes.Repeat(chunk[:1], size)) {
			t.Fatalf("writes interleaved at %d", off)
		}
	}
}

// stallingConn reports when a write reaches the network, and the peer
// reads nothing: the write stalls.
type stallingConn struct {
	net.Conn
	writing chan struct{}
	once    sync.Once
}

func (s *stallingConn) Write(p []byte) (int, error) {
	s.once.Do(func() { close(s.writing) })
	return s.Conn.Write(p)
}

// Close while a batch is stuck in the socket write (the peer reads
// nothing: a dead API) closes the socket at once, as crypto/tls does when
// Close meets a Write in flight, instead of queueing a close_notify
// behind the stuck write and waiting for its own 5 s deadline. The agent
// closes a dead API's session this way before it reconnects.
func TestCloseDuringAStalledBatchClosesAtOnce(t *testing.T) {
	client, _, counted := pair(t)
	stall := &stallingConn{Conn: counted.Conn, writing: make(chan struct{})}
	counted.Conn = stall
	wrote := make(chan error, 1)
	go func() {
		_, err := client.Write(make([]byte, 64<<10))
		wrote <- err
	}()
	<-stall.writing
	closed := make(chan error, 1)
	go func() { closed <- client.Close() }()
	// crypto/tls gives its close_notify 5 s: a Close that waits for it
	// is still blocked well before then.
	select {
	case <-closed:
	case <-time.After(3 * time.Second):
		t.Fatal("Close still blocked after 3s behind a stalled batch")
	}
	if err := <-wrote; err == nil {
		t.Error("the stalled batch was reported written")
	}
	if _, err := client.Write([]byte("after")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Write after Close: %v, want net.ErrClosed", err)
	}
}

// A yamux stream's data frame through muxjoin reaches the network in one
// write, header and body (two without muxjoin), and the peer reads exactly
// what was written; frames without a body (the stream's opening, pings)
// are not held back.
func TestAYamuxDataFrameIsOneNetworkWrite(t *testing.T) {
	for _, join := range []bool{false, true} {
		client, server, counted := pair(t)
		cfg := yamux.DefaultConfig()
		cfg.EnableKeepAlive = false
		cfg.LogOutput = io.Discard
		var conn io.ReadWriteCloser = client
		if join {
			conn = muxjoin.New(client)
		}
		cs, err := yamux.Client(conn, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer cs.Close()
		ss, err := yamux.Server(server, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer ss.Close()
		opened, err := cs.OpenStream()
		if err != nil {
			t.Fatal(err)
		}
		// The open is a header alone: were it held, the accept would
		// wait forever.
		if _, err := opened.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		accepted, err := ss.AcceptStream()
		if err != nil {
			t.Fatal(err)
		}
		one := make([]byte, 1)
		if _, err := io.ReadFull(accepted, one); err != nil || one[0] != 'x' {
			t.Fatalf("first byte %q, %v", one, err)
		}
		if _, err := cs.Ping(); err != nil {
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
			t.Errorf("muxjoin %v: %d network writes for a data frame, want %d", join, writes, want)
		}
	}
}
