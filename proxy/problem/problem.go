// Package problem renders API errors as RFC 9457 problem details
// (application/problem+json), the only error body pcap-server-api sends.
package problem

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
)

// ContentType is the media type of every error body.
const ContentType = "application/problem+json"

// Error is an error that knows which HTTP status it deserves. Packages that
// talk to the outside (UAA, the Cloud Controller, agents) return it so that
// the handler does not have to guess a status from an error string.
type Error struct {
	Status int    `json:"status"`
	Title  string `json:"title"`
	Detail string `json:"detail,omitempty"`
	// Err is the cause, for logs; it is never sent to the client because it
	// may name internal hosts.
	Err error `json:"-"`
}

// New returns a problem with the standard title of status.
func New(status int, format string, args ...any) *Error {
	return &Error{Status: status, Title: http.StatusText(status), Detail: fmt.Sprintf(format, args...)}
}

// Wrap is New with a cause kept for logs.
func Wrap(err error, status int, format string, args ...any) *Error {
	p := New(status, format, args...)
	p.Err = err
	return p
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%d %s: %s: %v", e.Status, e.Title, e.Detail, e.Err)
	}
	return fmt.Sprintf("%d %s: %s", e.Status, e.Title, e.Detail)
}

func (e *Error) Unwrap() error { return e.Err }

// From turns any error into a problem: a *Error anywhere in the chain is
// used as is, everything else is an internal error whose text stays in the
// logs.
func From(err error) *Error {
	var p *Error
	if errors.As(err, &p) {
		return p
	}
	return Wrap(err, http.StatusInternalServerError, "internal error")
}

// Write sends p as the response. Extra headers (for example
// WWW-Authenticate) must be set before calling it.
func Write(w http.ResponseWriter, p *Error) {
	body, err := json.Marshal(p)
	if err != nil {
		// Only strings and an int: marshalling cannot fail.
		panic(err)
	}
	h := w.Header()
	h.Set("Content-Type", ContentType)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(p.Status)
	_, _ = w.Write(append(body, '\n'))
}
