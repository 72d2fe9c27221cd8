package pcapcmd

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/cloudfoundry/pcap-server-release/cli/pcapstream"
)

// stubbornAPI streams three packets, then nothing, until the client
// leaves; it answers a stop with deleteStatus but never ends the stream.
type stubbornAPI struct {
	deleteStatus int
	deleted      chan string // the stop's path
	// stopTokens, if set, receives the stop's token when it arrives.
	stopTokens chan stopToken
}

// stopToken is the token a stop carried and when it arrived.
type stopToken struct {
	token string
	at    time.Time
}

func (a *stubbornAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodDelete {
		if a.stopTokens != nil {
			a.stopTokens <- stopToken{strings.TrimPrefix(r.Header.Get("Authorization"), "bearer "), time.Now()}
		}
		w.WriteHeader(a.deleteStatus)
		a.deleted <- r.URL.Path
		return
	}
	w.Header().Set("Pcap-Capture-Id", "0123456789abcdef")
	w.Header().Set("Pcap-Instances", "0")
	pw := pcapgo.NewWriterNanos(w)
	_ = pw.WriteFileHeader(65535, layers.LinkTypeEthernet)
	for i := range 3 {
		_ = pw.WritePacket(gopacket.CaptureInfo{Timestamp: time.Unix(1, int64(i)), CaptureLength: 60, Length: 60}, make([]byte, 60))
	}
	w.(http.Flusher).Flush()
	<-r.Context().Done()
}

// syncBuffer is stderr shared with the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitFor polls stderr for text; the CLI has no other signal to await.
func waitFor(t *testing.T, stderr *syncBuffer, text string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(stderr.String(), text) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q on stderr within 10s:\n%s", text, stderr.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func runAgainst(t *testing.T, api *stubbornAPI) (out string, stderr *syncBuffer, stop chan struct{}, abort func(), code <-chan int) {
	return runWith(t, api, nil)
}

// runWith starts a capture from api with the test's options, changed by
// change, and returns once it runs.
func runWith(t *testing.T, api *stubbornAPI, change func(*Options, *Env)) (out string, stderr *syncBuffer, stop chan struct{}, abort func(), code <-chan int) {
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	out = filepath.Join(t.TempDir(), "cap.pcap")
	o := Options{App: "app", AppGUID: "guid", Token: "t", APIURL: srv.URL, Output: out, Devices: []string{"eth0"}, Snaplen: 65535, Format: "pcap", Process: "web"}
	stderr = &syncBuffer{}
	stop = make(chan struct{})
	env := Env{Stdout: &bytes.Buffer{}, Stderr: stderr, Stop: stop}
	if change != nil {
		change(&o, &env)
	}
	ctx, abort := context.WithCancel(context.Background())
	t.Cleanup(abort)
	done := make(chan int, 1)
	go func() { done <- Run(ctx, o, env) }()
	waitFor(t, stderr, "Capturing app app")
	return out, stderr, stop, abort, done
}

func packetsIn(t *testing.T, file string) uint64 {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c := pcapstream.NewCopier(&bytes.Buffer{}, f)
	if err := c.Copy(); err != nil {
		t.Fatalf("%s is not a whole capture: %v", file, err)
	}
	return c.Progress().Packets
}

// The first Ctrl-C asks the API to stop; a second one aborts at once,
// whatever the API does, and the file is valid.
func TestSecondCtrlCAborts(t *testing.T) {
	api := &stubbornAPI{deleteStatus: http.StatusAccepted, deleted: make(chan string, 1)}
	out, stderr, stop, abort, code := runAgainst(t, api)
	close(stop)
	if path := <-api.deleted; path != "/v1/apps/guid/capture/0123456789abcdef" {
		t.Fatalf("stop sent to %s", path)
	}
	waitFor(t, stderr, "Press Ctrl-C again")
	abort()
	if c := <-code; c != ExitOK {
		t.Fatalf("exit %d:\n%s", c, stderr.String())
	}
	if n := packetsIn(t, out); n != 3 || !strings.Contains(stderr.String(), "3 packets") || !strings.Contains(stderr.String(), "stopped (interrupted)") {
		t.Fatalf("%d packets in the file:\n%s", n, stderr.String())
	}
}

// An API that cannot stop the capture (an older one) makes the first
// Ctrl-C abort, as it did before graceful stops.
func TestCtrlCAbortsWhenTheAPICannotStop(t *testing.T) {
	api := &stubbornAPI{deleteStatus: http.StatusMethodNotAllowed, deleted: make(chan string, 1)}
	out, stderr, stop, _, code := runAgainst(t, api)
	close(stop)
	if c := <-code; c != ExitOK {
		t.Fatalf("exit %d:\n%s", c, stderr.String())
	}
	if n := packetsIn(t, out); n != 3 || !strings.Contains(stderr.String(), "did not stop the capture") {
		t.Fatalf("%d packets in the file:\n%s", n, stderr.String())
	}
}

// renewingSession hands out "old" and, asked to renew it, "new".
type renewingSession struct{ renewed []string }

func (s *renewingSession) Token(context.Context) (string, error) { return "old", nil }
func (s *renewingSession) Renew(_ context.Context, rejected string) (string, error) {
	s.renewed = append(s.renewed, rejected)
	return "new", nil
}
func (s *renewingSession) APIURL(context.Context) (string, error)          { return "", nil }
func (s *renewingSession) AppGUID(context.Context, string) (string, error) { return "guid", nil }

// A token the API rejects before its expiry (revoked, or signed with a
// retired key) is renewed once: asking for the token again would return
// the same one.
func TestRejectedTokenIsRenewed(t *testing.T) {
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = append(seen, r.Header.Get("Authorization"))
		if r.Header.Get("Authorization") != "bearer new" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusTeapot)
	}))
	defer srv.Close()
	sess := &renewingSession{}
	resp, token, err := get(context.Background(), srv.Client(), srv.URL, sess)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTeapot || token != "new" || len(sess.renewed) != 1 || sess.renewed[0] != "old" {
		t.Fatalf("status %d, token %q, renewed %v, requests %v", resp.StatusCode, token, sess.renewed, seen)
	}
}
