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
)

// stopper turns the first Ctrl-C into a graceful stop: before the capture
// runs it gives up; once it runs, it asks the API to stop the capture, so
// that the cells drain what they captured and the stream ends with its
// trailers. If the API cannot stop it, the capture is aborted.
type stopper struct {
	abort   func()
	out     io.Writer
	printer *printer

	mu       sync.Mutex
	req      *stopRequest // set once the capture runs
	finished bool         // the stream has ended: nothing more to say
}

// stopRequest is what a stop needs: the capture's URL and a token.
type stopRequest struct {
	client *http.Client
	tokens Tokens
	token  string // the capture's, should a fresh one not be had
	url    string
}

// stopTimeout bounds the stop request; the capture itself then ends
// within the API's own stop timeout.
const stopTimeout = 15 * time.Second

func (s *stopper) started(r stopRequest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.req = &r
}

// finish says the stream has ended, with or without a stop.
func (s *stopper) finish() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.finished = true
}

// watch waits for the first stop signal until ctx ends.
func (s *stopper) watch(ctx context.Context, stop <-chan struct{}) {
	select {
	case <-ctx.Done():
		return
	case <-stop:
	}
	s.mu.Lock()
	req := s.req
	s.mu.Unlock()
	if req == nil {
		s.abort()
		return
	}
	s.say("Stopping the capture: the cells send what they captured. Press Ctrl-C again to stop at once.")
	if err := req.send(ctx); err != nil {
		s.mu.Lock()
		finished := s.finished
		s.mu.Unlock()
		if finished {
			return // the stream ended meanwhile: nothing to stop
		}
		s.say(fmt.Sprintf("pcap: the API did not stop the capture (%v): stopping at once", err))
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
	ctx, cancel := context.WithTimeout(ctx, stopTimeout)
	defer cancel()
	token := r.token
	// The cf CLI may be gone after Ctrl-C: a fresh token is a bonus.
	tctx, tcancel := context.WithTimeout(ctx, 5*time.Second)
	if t, err := r.tokens.Token(tctx); err == nil {
		token = t
	}
	tcancel()
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
