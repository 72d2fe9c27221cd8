package pcapcmd

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// bodyReader remembers how the response body ended, so that a stream cut
// on the way (the gorouter's request timeout, a lost connection) can be
// told from a failure to write the file.
type bodyReader struct {
	r io.Reader

	mu  sync.Mutex
	err error // the read error that ended the body, io.EOF for its end
	at  time.Time
}

func (b *bodyReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil {
		b.mu.Lock()
		if b.err == nil {
			b.err, b.at = err, time.Now()
		}
		b.mu.Unlock()
	}
	return n, err
}

// ended returns when and by what error the body ended; err is nil if it
// has not ended.
func (b *bodyReader) ended() (at time.Time, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.at, b.err
}

// cutError is a stream cut off without trailers, as the summary says it.
type cutError string

func (c cutError) Error() string { return string(c) }

// roundCut is the rule for suggesting the gorouter's request timeout: the
// cut came within cutSlack after a whole multiple of roundCut since the
// request was sent. Operators set request_timeout_in_seconds in whole
// seconds, and in practice to round values (900 by default, 1800, 3600;
// 5 or 10 in tests); the CLI's clock starts before the gorouter's and the
// cut needs a round trip to arrive, so the cut is seen a little after it.
const (
	roundCut = 5 * time.Second
	cutSlack = time.Second
)

// streamCut explains a capture stream that ended without its trailers
// (which the API always sends, whatever ended the capture): it returns
// the summary's "ended" text and a message with the capture id and, when
// the cut came at a round number of seconds after the request, the
// gorouter's request timeout as the likely cause. cut is false when the
// stream was not cut: its trailers arrived, or the body did not end by a
// read (the file could not be written, or the stream was not a capture).
func streamCut(resp *http.Response, body *bodyReader, requested time.Time) (why string, cut bool, advice error) {
	at, readErr := body.ended()
	if readErr == nil || resp.Trailer.Get("Pcap-End-Reason") != "" {
		return "", false, nil
	}
	id := resp.Header.Get("Pcap-Capture-Id")
	after := at.Sub(requested)
	shown := after.Round(100 * time.Millisecond)
	cause := "the connection ended"
	if !errors.Is(readErr, io.EOF) {
		cause = readErr.Error()
	}
	why = fmt.Sprintf("cut off without trailers %s after the request (capture %s: %s)", shown, id, cause)
	msg := fmt.Sprintf("capture %s was cut off %s after the request, before the API could say how it ended (no trailers); "+
		"the file is valid and holds every packet received until then", id, shown)
	if k := after / roundCut; k >= 1 && after-k*roundCut <= cutSlack {
		msg += fmt.Sprintf(". A cut at a round number of seconds (%s) is what a gorouter's request timeout does: "+
			"it ends every request after request_timeout_in_seconds (900 s by default), capture streams included; "+
			"capture for less (--duration), or ask the platform operator to raise it", k*roundCut)
	}
	return why, true, errors.New(msg)
}
