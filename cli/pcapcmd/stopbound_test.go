package pcapcmd

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudfoundry/pcap-server-release/cli/cfconfig"
)

// awaitCode waits for Run's exit code, bounded: a stop that never ends is
// the failure these tests look for.
func awaitCode(t *testing.T, code <-chan int, within time.Duration, stderr *syncBuffer) int {
	t.Helper()
	select {
	case c := <-code:
		return c
	case <-time.After(within):
		t.Fatalf("the capture did not end within %s of the stop:\n%s", within, stderr.String())
		return 0
	}
}

// An API that accepts the stop but never ends the stream (a hung API or
// network) cannot hold the CLI: under the cf CLI a second Ctrl-C reaches
// the shell, not the plugin. After the stop timeout the CLI aborts, says
// that the stop did not finish and what the file then lacks, keeps every
// packet and exits non-zero.
func TestGracefulStopIsBounded(t *testing.T) {
	api := &stubbornAPI{deleteStatus: http.StatusAccepted, deleted: make(chan string, 1)}
	out, stderr, stop, _, code := runWith(t, api, func(o *Options, env *Env) {
		o.StopTimeout = 500 * time.Millisecond
		env.CLIGone = make(chan struct{}) // under a cf CLI that lives on
	})
	close(stop)
	<-api.deleted
	if c := awaitCode(t, code, 10*time.Second, stderr); c != ExitError {
		t.Fatalf("exit %d, want %d:\n%s", c, ExitError, stderr.String())
	}
	msg := stderr.String()
	for _, want := range []string{"the stop did not finish within 500ms", "every packet received", "drop counts are unknown", "3 packets"} {
		if !strings.Contains(msg, want) {
			t.Errorf("stderr lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "Ctrl-C again") {
		t.Errorf("under the cf CLI a second Ctrl-C goes to the shell, yet the CLI suggests it:\n%s", msg)
	}
	if n := packetsIn(t, out); n != 3 {
		t.Fatalf("%d packets in the file", n)
	}
}

func TestStopTimeoutFromEnvironment(t *testing.T) {
	o, err := Parse([]string{"app"}, func(k string) string { return map[string]string{"PCAP_STOP_TIMEOUT": "3s"}[k] })
	if err != nil || o.StopTimeout != 3*time.Second {
		t.Fatalf("%v, %v", o.StopTimeout, err)
	}
	for _, bad := range []string{"3", "-1s", "0s", "soon"} {
		_, err := Parse([]string{"app"}, func(k string) string { return map[string]string{"PCAP_STOP_TIMEOUT": bad}[k] })
		var ue *UsageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), "PCAP_STOP_TIMEOUT") {
			t.Errorf("PCAP_STOP_TIMEOUT=%s: %v", bad, err)
		}
	}
}

// The cf CLI's death (a kill of cf, a cancelled CI job) stops the capture
// as Ctrl-C does: the API is asked to stop it.
func TestCfCLIExitStopsTheCapture(t *testing.T) {
	api := &stubbornAPI{deleteStatus: http.StatusAccepted, deleted: make(chan string, 1)}
	gone := make(chan struct{})
	_, stderr, _, abort, code := runWith(t, api, func(_ *Options, env *Env) {
		env.CLIGone = gone
	})
	close(gone)
	select {
	case <-api.deleted:
	case <-time.After(10 * time.Second):
		t.Fatalf("no stop sent within 10s of the cf CLI's exit:\n%s", stderr.String())
	}
	waitFor(t, stderr, "The cf CLI exited: stopping the capture")
	abort()
	<-code
}

// jwtExpiring is an unsigned JWT whose exp is at, enough for the CLI,
// which reads the expiry only to plan its refreshes.
func jwtExpiring(at time.Time, n int) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"none"}`)) + "." + enc(fmt.Appendf(nil, `{"exp":%d,"n":%d}`, at.Unix(), n)) + ".sig"
}

// cfLikeSession hands out tokens as the cf CLI does with short-lived
// tokens (cf refreshes any token with less than a minute left), until the
// cf CLI is gone.
type cfLikeSession struct {
	lifetime time.Duration
	mu       sync.Mutex
	n        int
	gone     bool
	asked    chan int // the number of each token handed out
}

func (s *cfLikeSession) Token(context.Context) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gone {
		return "", errors.New("AccessToken: dial cf CLI: connection refused")
	}
	s.n++
	select {
	case s.asked <- s.n:
	default:
	}
	return jwtExpiring(time.Now().Add(s.lifetime), s.n), nil
}
func (s *cfLikeSession) APIURL(context.Context) (string, error)          { return "", nil }
func (s *cfLikeSession) AppGUID(context.Context, string) (string, error) { return "guid", nil }

// Bug: a stop sent after the capture's token expired, once the cf CLI is
// gone, was refused (401) and the capture aborted. The CLI renews its
// token from the cf CLI ahead of expiry while cf lives and uses that one.
func TestStopAfterTheTokenExpiredUsesAKeptToken(t *testing.T) {
	const lifetime = 3 * time.Second
	sess := &cfLikeSession{lifetime: lifetime, asked: make(chan int, 16)}
	api := &stubbornAPI{deleteStatus: http.StatusAccepted, deleted: make(chan string, 1), stopTokens: make(chan stopToken, 1)}
	_, stderr, stop, abort, code := runWith(t, api, func(o *Options, env *Env) {
		o.Token = ""
		env.Session = sess
		env.CLIGone = make(chan struct{})
	})
	<-sess.asked
	// Let the capture's own token expire while cf lives; then cf dies as
	// on Ctrl-C, and the stop follows at once.
	time.Sleep(lifetime)
	sess.mu.Lock()
	sess.gone = true
	sess.mu.Unlock()
	close(stop)
	var got stopToken
	select {
	case got = <-api.stopTokens:
	case <-time.After(10 * time.Second):
		t.Fatalf("no stop sent within 10s:\n%s", stderr.String())
	}
	exp, err := cfconfig.TokenExpiry(got.token)
	if err != nil {
		t.Fatalf("stop token %q: %v", got.token, err)
	}
	if !exp.After(got.at) {
		t.Fatalf("the stop carried a token that expired at %s, before it arrived at %s:\n%s", exp, got.at, stderr.String())
	}
	<-api.deleted
	abort()
	<-code
}
