package tunnel_test

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	agenttunnel "github.com/cloudfoundry/pcap-server-release/cellagent/tunnel"
	"github.com/cloudfoundry/pcap-server-release/proxy/tunnel"
	"github.com/cloudfoundry/pcap-server-release/test/testpki"
	"github.com/cloudfoundry/pcap-server-release/wire"
)

// BenchmarkCaptureStream measures one capture stream's throughput on
// loopback: the agent sends 128 KiB batches of 1500-byte packets, the API
// reads and decodes them. "tls" is the baseline of the same frames on a
// bare TLS connection; "tunnel" adds yamux with the project's settings,
// the stream opened as a capture opens it (its unread bytes bounded).
func BenchmarkCaptureStream(b *testing.B) {
	p := benchPKI(b)
	var batch wire.Batch
	pkt := make([]byte, 1500)
	for batch.Size() < 128<<10 {
		batch.Append(time.Now().UnixNano(), len(pkt), pkt)
	}

	b.Run("tls", func(b *testing.B) {
		ln, err := tls.Listen("tcp", "127.0.0.1:0", p.serverTLS())
		if err != nil {
			b.Fatal(err)
		}
		defer ln.Close()
		go func() {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			defer conn.Close()
			w := wire.NewWriter(conn)
			for w.WriteBatch(&batch) == nil {
			}
		}()
		conn, err := tls.Dial("tcp", ln.Addr().String(), p.clientTLS(&p.agent))
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close()
		consume(b, conn, batch.Size())
	})

	b.Run("tunnel", func(b *testing.B) {
		srv := tunnel.NewServer(tunnel.Config{TLS: p.serverTLS(), APIID: "bench", KeepaliveInterval: 10 * time.Second})
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		served := make(chan struct{})
		go func() { defer close(served); _ = srv.Serve(ctx, ln) }()
		client := agenttunnel.New(agenttunnel.Config{
			Addresses: []string{ln.Addr().String()},
			TLS:       p.clientTLS(&p.agent),
			Hello:     wire.Hello{AgentID: "bench", CellIPs: []string{"127.0.0.1"}},
			Handle: func(ctx context.Context, s net.Conn) {
				w := wire.NewWriter(s)
				for ctx.Err() == nil && w.WriteBatch(&batch) == nil {
				}
			},
		})
		ran := make(chan struct{})
		go func() { defer close(ran); _ = client.Run(ctx) }()
		defer func() { cancel(); <-ran; <-served }()
		wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
		defer wcancel()
		agent, err := srv.Registry.WaitFor(wctx, mustAddr("127.0.0.1"), nil)
		if err != nil {
			b.Fatal(err)
		}
		// As a capture opens its streams: counted against its Unread.
		stream, err := agent.OpenLimited(wctx, tunnel.NewUnread(256<<10, 1))
		if err != nil {
			b.Fatal(err)
		}
		defer stream.Close()
		consume(b, stream, batch.Size())
	})
}

// consume reads b.N Packets frames and decodes them as the API does.
func consume(b *testing.B, r io.Reader, size int) {
	fr := wire.NewReader(r)
	var pkts []wire.Packet
	b.SetBytes(int64(size))
	b.ResetTimer()
	for b.Loop() {
		f, err := fr.Next()
		if err != nil {
			b.Fatal(err)
		}
		if pkts, err = wire.DecodePackets(f.Payload, pkts[:0]); err != nil {
			b.Fatal(err)
		}
	}
}

func benchPKI(b *testing.B) *pki {
	ca, err := testpki.NewCA("bench CA")
	if err != nil {
		b.Fatal(err)
	}
	srv, _ := ca.Server("pcap-server-api.service.cf.internal")
	cl, _ := ca.Client("agent")
	p := &pki{ca: ca, serverName: "pcap-server-api.service.cf.internal"}
	if p.server, err = srv.TLS(); err != nil {
		b.Fatal(err)
	}
	if p.agent, err = cl.TLS(); err != nil {
		b.Fatal(err)
	}
	return p
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
