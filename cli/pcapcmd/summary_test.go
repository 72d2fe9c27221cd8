package pcapcmd

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// With several devices the summary says on which of them packets were
// lost, from the pcapng statistics blocks; the trailers stay totals.
func TestSummaryNamesTheDevicesThatDropped(t *testing.T) {
	query := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		query <- r.URL.RawQuery
		w.Header().Set("Pcap-Capture-Id", "0123456789abcdef")
		w.Header().Set("Pcap-Instances", "0")
		w.Header().Set("Trailer", "Pcap-End-Reason, Pcap-Dropped, Pcap-Dropped-Detail")
		ng, err := pcapgo.NewNgWriterInterface(w, pcapgo.NgInterface{Name: "app/0/eth0", LinkType: layers.LinkTypeEthernet, SnapLength: 65535}, pcapgo.DefaultNgWriterOptions)
		if err != nil {
			t.Error(err)
			return
		}
		_, _ = ng.AddInterface(pcapgo.NgInterface{Name: "app/0/lo", LinkType: layers.LinkTypeEthernet, SnapLength: 65535})
		_ = ng.WritePacket(gopacket.CaptureInfo{Timestamp: time.Unix(1, 0), CaptureLength: 60, Length: 60, InterfaceIndex: 1}, make([]byte, 60))
		_ = ng.WriteInterfaceStats(0, pcapgo.NgInterfaceStatistics{PacketsReceived: 1})
		_ = ng.WriteInterfaceStats(1, pcapgo.NgInterfaceStatistics{PacketsReceived: 8, PacketsDropped: 7})
		_ = ng.Flush()
		w.Header().Set("Pcap-End-Reason", "duration")
		w.Header().Set("Pcap-Dropped", "7")
		w.Header().Set("Pcap-Dropped-Detail", "kernel=7 agent=0 api=0")
	}))
	t.Cleanup(srv.Close)
	o, err := Parse([]string{"app", "-d", "eth0,lo", "-i", "0", "--app-guid", "guid", "--token", "t", "--api-url", srv.URL,
		"-o", filepath.Join(t.TempDir(), "cap.pcapng")}, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	stderr := &syncBuffer{}
	if code := Run(context.Background(), o, Env{Stdout: &syncBuffer{}, Stderr: stderr}); code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if q := <-query; !strings.Contains(q, "device=eth0&device=lo") || !strings.Contains(q, "format=pcapng") {
		t.Fatalf("query %s", q)
	}
	if !strings.Contains(stderr.String(), "dropped: 7 (kernel=7 agent=0 api=0; app/0/lo: 7); ended: duration reached") {
		t.Fatalf("summary: %s", stderr.String())
	}
}
