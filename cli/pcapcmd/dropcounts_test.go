package pcapcmd

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// When an instance's final counters never reached the API, the summary
// says the drops are at least what is known and why the rest is not,
// instead of a total that looks exact.
func TestSummaryMarksUnknownCounts(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Pcap-Capture-Id", "0123456789abcdef")
		w.Header().Set("Trailer", "Pcap-End-Reason, Pcap-Dropped, Pcap-Dropped-Detail, Pcap-Counts-Unknown")
		if err := pcapgo.NewWriterNanos(w).WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
			t.Error(err)
		}
		w.Header().Set("Pcap-End-Reason", "requested")
		w.Header().Set("Pcap-Dropped", ">=3")
		w.Header().Set("Pcap-Dropped-Detail", "kernel=3 agent=0 api=0")
		w.Header().Set("Pcap-Counts-Unknown", "0: its agent did not answer the stop within 15s; 2: its agent closed the stream without sending them")
	}))
	t.Cleanup(srv.Close)
	o, err := Parse([]string{"app", "--app-guid", "guid", "--token", "t", "--api-url", srv.URL, "-o", filepath.Join(t.TempDir(), "x.pcap")}, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	stderr := &syncBuffer{}
	if code := Run(context.Background(), o, Env{Stdout: io.Discard, Stderr: stderr}); code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	want := "dropped: ≥3 (kernel=3 agent=0 api=0; instance 0's counts unknown: its agent did not answer the stop within 15s; " +
		"instance 2's counts unknown: its agent closed the stream without sending them); ended: stopped on request"
	if !strings.Contains(stderr.String(), want) {
		t.Fatalf("summary:\n%s\nwant %s", stderr.String(), want)
	}
}
