package problem

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"strings"
	"time"
	"unicode"
)

// MaxUpstreamText bounds what of an upstream's answer reaches a message.
const MaxUpstreamText = 200

// Clean shortens text from an upstream's answer for a message and
// replaces what is not printable: the answer is not trusted to be short
// or harmless.
func Clean(s string) string {
	if len(s) > MaxUpstreamText {
		s = s[:MaxUpstreamText] + "..."
	}
	return strings.Map(func(r rune) rune {
		if r == unicode.ReplacementChar || !unicode.IsPrint(r) {
			return '?'
		}
		return r
	}, s)
}

// Unreachable explains why upstream ("Cloud Controller", "BOSH director")
// gave no answer while the API fetched what: 503, as it may be back in a
// moment; an untrusted certificate is said as such, since a retry will
// not mend it.
func Unreachable(ctx context.Context, err error, upstream, what string, timeout time.Duration) *Error {
	var netErr net.Error
	var certErr *tls.CertificateVerificationError
	switch {
	case errors.Is(ctx.Err(), context.Canceled):
		return Wrap(err, http.StatusServiceUnavailable, "request cancelled while asking the %s for %s", upstream, what)
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) ||
		(errors.As(err, &netErr) && netErr.Timeout()):
		return Wrap(err, http.StatusServiceUnavailable, "%s timed out (limit %s) while fetching %s", upstream, timeout, what)
	case errors.As(err, &certErr):
		return Wrap(err, http.StatusServiceUnavailable, "%s unreachable: its TLS certificate is not trusted by pcap-server", upstream)
	default:
		return Wrap(err, http.StatusServiceUnavailable, "%s unreachable while fetching %s", upstream, what)
	}
}
