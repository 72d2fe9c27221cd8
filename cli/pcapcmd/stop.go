package pcapcmd

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/cloudfoundry/pcap-server-release/cli/tokenkeeper"
)

// stopper turns the first Ctrl-C (or the cf CLI's death) into a graceful
// stop: before the capture runs it gives up; once it runs, it asks the API
// to stop the capture, so that the cells drain what they captured and the
// stream ends with its trailers. If the API cannot stop it, or the stream
// has not ended within the stop timeout, the capture is aborted.
type stopper struct {
	abort   func()
	out     io.Writer
	printer *printer
	// timeout bounds a graceful stop, from the signal to the stream's end.
	timeout time.Duration
	// underCF: the plugin runs under the cf CLI, which dies on Ctrl-C; a
	// second Ctrl-C then reaches the shell, not this process.
	underCF bool

	mu       sync.Mutex
	req      *stopRequest  // set once the capture runs
	finished chan struct{} // closed when the stream has ended
	timedOut bool          // the stop did not finish in time: aborted
}

// stopRequest is what a stop needs: the capture's URL and a token.
type stopRequest struct {
	client *http.Client
	tokens *tokenkeeper.Keeper
	url    string
}

// DefaultStopTimeout bounds a graceful stop on the client's side. It is
// longer than the API's own bound on the agents' drain (15 s), so an API
// that works ends the stream with its trailers first; it catches an API
// or a network that does not answer at all.
const DefaultStopTimeout = 20 * time.Second

// tokenTimeout bounds asking the session for a token for the stop: under
// the cf CLI, cf is usually gone by then, and the kept token does.
const tokenTimeout = 2 * time.Second

func newStopper(abort func(), out io.Writer, p *printer, timeout time.Duration, underCF bool) *stopper {
	if timeout <= 0 {
		timeout = DefaultStopTimeout
	}
	return &stopper{abort: abort, out: out, printer: p, timeout: timeout, underCF: underCF, finished: make(chan struct{})}
}

func (s *stopper) started(r stopRequest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.req = &r
}

// finish says the stream has ended, with or without a stop.
func (s *stopper) finish() {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.finished:
	default:
		close(s.finished)
	}
}

// stopTimedOut reports whether the capture was aborted because the stop
// did not finish in time.
func (s *stopper) stopTimedOut() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.timedOut
}

// watch waits for the first stop signal, or the cf CLI's death, until ctx
// ends.
func (s *stopper) watch(ctx context.Context, stop, cliGone <-chan struct{}) {
	why := "Stopping the capture"
	select {
	case <-ctx.Done():
		return
	case <-stop:
	case <-cliGone:
		why = "The cf CLI exited: stopping the capture"
	}
	s.mu.Lock()
	req := s.req
	s.mu.Unlock()
	if req == nil {
		s.abort()
		return
	}
	deadline := time.Now().Add(s.timeout)
	again := " Press Ctrl-C again to stop at once."
	if s.underCF {
		again = ""
	}
	s.say(fmt.Sprintf("%s: the cells send what they captured (waiting at most %s).%s", why, s.timeout, again))
	sctx, cancel := context.WithDeadline(ctx, deadline)
	err := req.send(sctx)
	cancel()
	if err != nil {
		select {
		case <-s.finished:
			return // the stream ended meanwhile: nothing to stop
		default:
		}
		s.say(fmt.Sprintf("pcap: the API did not stop the capture (%v): stopping at once", err))
		s.abort()
		return
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-s.finished:
	case <-t.C:
		s.mu.Lock()
		s.timedOut = true
		s.mu.Unlock()
		s.say(fmt.Sprintf("pcap: the stop did not finish within %s: stopping at once. The file holds every "+
			"packet received so far, but not what the cells still held, and the drop counts are unknown.", s.timeout))
		s.abort()
	}
}

func (s *stopper) say(msg string) {
	s.printer.clearProgress()
	s.printer.mu.Lock()
	defer s.printer.mu.Unlock()
	fmt.Fprintln(s.out, msg)
}

// send asks the API to stop the capture; any replica will do.
func (r *stopRequest) send(ctx context.Context) error {
	token, err := r.tokens.Token(ctx, tokenTimeout)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, r.url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "bearer "+token)
	resp, err := r.client.Do(req)
	if err != nil {
		return unwrapURLError(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return problemError(resp)
	}
	return nil
}

// stopURL is DELETE /v1/apps/{guid}/capture/{capture_id} of the capture
// at captureURL.
func stopURL(captureURL, captureID, process string) string {
	u, err := url.Parse(captureURL)
	if err != nil {
		return ""
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + "/" + url.PathEscape(captureID)
	u.RawQuery = ""
	if process != "" && process != "web" {
		u.RawQuery = url.Values{"process": {process}}.Encode()
	}
	return u.String()
}
