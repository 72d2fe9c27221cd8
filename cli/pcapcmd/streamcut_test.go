package pcapcmd

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// captureThenCut serves a capture of one packet and then cuts the
// stream without trailers, as the gorouter does at its request timeout:
// over HTTP/1.1 it closes the connection inside the chunked body, over
// HTTP/2 it resets the stream (INTERNAL_ERROR).
func captureThenCut(t *testing.T, w http.ResponseWriter) {
	w.Header().Set("Pcap-Capture-Id", "0123456789abcdef")
	w.Header().Set("Pcap-Instances", "0")
	w.Header().Set("Trailer", "Pcap-End-Reason, Pcap-Dropped, Pcap-Dropped-Detail")
	pw := pcapgo.NewWriterNanos(w)
	if err := pw.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		t.Error(err)
		return
	}
	_ = pw.WritePacket(gopacket.CaptureInfo{Timestamp: time.Unix(1, 0), CaptureLength: 60, Length: 60}, make([]byte, 60))
	_ = http.NewResponseController(w).Flush()
	panic(http.ErrAbortHandler)
}

// A stream cut without trailers is not a capture that ended: the CLI says
// it was cut, names the capture, keeps the packets and exits 1, over
// HTTP/1.1 and HTTP/2.
func TestStreamCutWithoutTrailersIsNamed(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		name := map[bool]string{false: "HTTP/1.1", true: "HTTP/2"}[h2]
		t.Run(name, func(t *testing.T) {
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { captureThenCut(t, w) }))
			// The panic that cuts the stream is not news.
			srv.Config.ErrorLog = nil
			srv.EnableHTTP2 = h2
			srv.StartTLS()
			t.Cleanup(srv.Close)
			out := filepath.Join(t.TempDir(), "cut.pcap")
			o, err := Parse([]string{"app", "--app-guid", "guid", "--token", "t", "--api-url", srv.URL, "-o", out}, noEnv)
			if err != nil {
				t.Fatal(err)
			}
			stderr := &syncBuffer{}
			code := Run(context.Background(), o, Env{Stdout: io.Discard, Stderr: stderr, Transport: srv.Client().Transport})
			text := stderr.String()
			if code != ExitError {
				t.Fatalf("exit %d: %s", code, text)
			}
			for _, want := range []string{"1 packets", "ended: cut off without trailers", "capture 0123456789abcdef was cut off",
				"the file is valid and holds every packet received until then"} {
				if !strings.Contains(text, want) {
					t.Errorf("stderr lacks %q:\n%s", want, text)
				}
			}
			// Cut at once: no round number of seconds, no advice about it.
			if strings.Contains(text, "request_timeout_in_seconds") {
				t.Errorf("a cut after well under 5 s suggests the request timeout:\n%s", text)
			}
			if data, err := os.ReadFile(out); err != nil || len(data) != 24+16+60 {
				t.Fatalf("the file holds %d bytes (%v), want the header and one packet", len(data), err)
			}
		})
	}
}

// The rule for naming the gorouter's request timeout: a cut within a
// second after a whole multiple of 5 s since the request.
func TestStreamCutSuggestsTheRequestTimeoutAtRoundSeconds(t *testing.T) {
	requested := time.Now()
	resp := &http.Response{Header: http.Header{"Pcap-Capture-Id": {"feedfacecafebeef"}}, Trailer: http.Header{}}
	for _, tc := range []struct {
		after   time.Duration
		suggest bool
	}{
		{900*time.Second + 40*time.Millisecond, true},
		{5*time.Second + 900*time.Millisecond, true},
		{10 * time.Second, true},
		{12500 * time.Millisecond, false},
		{4900 * time.Millisecond, false},
		{900 * time.Millisecond, false},
	} {
		body := &bodyReader{err: io.ErrUnexpectedEOF, at: requested.Add(tc.after)}
		why, cut, advice := streamCut(resp, body, requested)
		if !cut || !strings.Contains(why, "feedfacecafebeef") || !strings.Contains(why, "unexpected EOF") {
			t.Fatalf("after %s: cut %v, why %q", tc.after, cut, why)
		}
		if got := strings.Contains(advice.Error(), "request_timeout_in_seconds"); got != tc.suggest {
			t.Errorf("after %s: suggests the request timeout: %v, want %v (%v)", tc.after, got, tc.suggest, advice)
		}
	}
	// With trailers, or with a body that never ended by a read (the
	// file could not be written), nothing was cut.
	if _, cut, _ := streamCut(&http.Response{Header: resp.Header, Trailer: http.Header{"Pcap-End-Reason": {"duration"}}},
		&bodyReader{err: io.EOF, at: requested}, requested); cut {
		t.Error("a stream with trailers counts as cut")
	}
	if _, cut, _ := streamCut(resp, &bodyReader{}, requested); cut {
		t.Error("a body still open counts as cut")
	}
	if _, cut, _ := streamCut(resp, &bodyReader{err: errors.New("x"), at: requested}, requested); !cut {
		t.Error("a read error without trailers does not count as cut")
	}
}
