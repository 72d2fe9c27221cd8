package cloudcontroller

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/cloudfoundry/pcap-server-release/proxy/problem"
)

// Cloud Controller error codes (cloud_controller_ng errors/v2.yml) that
// change what pcap-server answers. Decisions branch on these, never on the
// human-readable detail.
const (
	codeInvalidAuthToken     = 1000
	codeNotAuthenticated     = 10002
	codeNotAuthorized        = 10003
	codeInsufficientScope    = 10007
	codeResourceNotFound     = 10010
	codeRateLimitExceeded    = 10013
	codeIPRateLimitExceeded  = 10014
	codeServiceUnavailable   = 10015
	codeOrgSuspended         = 10017
	codeUaaUnavailable       = 20004
	codeStatsUnavailable     = 200002
	codeInstancesUnavailable = 220002
)

// maxDescribedErrorTextLength bounds the Cloud Controller's text in a
// message (clean).
const maxDescribedErrorTextLength = problem.MaxUpstreamText

// ccError is one entry of {"errors":[...]}.
type ccError struct {
	Code   int    `json:"code"`
	Title  string `json:"title"`
	Detail string `json:"detail"`
}

// parseErrorBody reads a Cloud Controller error body. Anything else (a
// gorouter page, an empty body) gives no errors, and the HTTP status alone
// decides.
func parseErrorBody(body []byte) []ccError {
	var doc struct {
		Errors []ccError `json:"errors"`
	}
	if json.Unmarshal(body, &doc) != nil {
		return nil
	}
	return doc.Errors
}

// errorProblem maps a non-2xx answer to what pcap-server answers: never a
// 500, since the fault is upstream or the caller's. what names the
// resource that was asked for ("app 1234").
func errorProblem(status int, body []byte, what string) *problem.Error {
	errs := parseErrorBody(body)
	var first ccError
	if len(errs) > 0 {
		first = errs[0]
	}
	cause := fmt.Errorf("cloud controller answered HTTP %d for %s: %s", status, what, describeAll(errs))

	switch first.Code {
	case codeInvalidAuthToken, codeNotAuthenticated:
		return problem.Wrap(cause, http.StatusUnauthorized, "the Cloud Controller rejected the token (%s); log in again", describe(first))
	case codeNotAuthorized, codeInsufficientScope, codeOrgSuspended:
		return problem.Wrap(cause, http.StatusForbidden, "the Cloud Controller refused access to %s (%s)", what, describe(first))
	case codeResourceNotFound:
		return problem.Wrap(cause, http.StatusNotFound, "%s not found", what)
	case codeRateLimitExceeded, codeIPRateLimitExceeded:
		return problem.Wrap(cause, http.StatusTooManyRequests, "the Cloud Controller's rate limit is exhausted; try again later")
	case codeServiceUnavailable, codeUaaUnavailable, codeStatsUnavailable, codeInstancesUnavailable:
		return problem.Wrap(cause, http.StatusServiceUnavailable, "Cloud Controller temporarily unavailable while fetching %s (%s)", what, describe(first))
	}

	switch {
	case status == http.StatusUnauthorized:
		return problem.Wrap(cause, http.StatusUnauthorized, "the Cloud Controller rejected the token (%s); log in again", describe(first))
	case status == http.StatusForbidden:
		return problem.Wrap(cause, http.StatusForbidden, "the Cloud Controller refused access to %s (%s)", what, describe(first))
	case status == http.StatusNotFound:
		return problem.Wrap(cause, http.StatusNotFound, "%s not found", what)
	case status == http.StatusTooManyRequests:
		return problem.Wrap(cause, http.StatusTooManyRequests, "the Cloud Controller's rate limit is exhausted; try again later")
	case status == http.StatusServiceUnavailable && len(errs) == 0:
		// The gorouter's answer when no Cloud Controller is registered.
		return problem.Wrap(cause, http.StatusServiceUnavailable, "Cloud Controller unavailable while fetching %s (HTTP 503)", what)
	case status >= 500:
		return problem.Wrap(cause, http.StatusBadGateway, "Cloud Controller error while fetching %s (HTTP %d, %s)", what, status, describe(first))
	default:
		return problem.Wrap(cause, http.StatusBadGateway, "the Cloud Controller refused the request for %s (HTTP %d, %s)", what, status, describe(first))
	}
}

// describe is the title (and code) of an error, for messages: titles are
// stable and say what happened without internal detail.
func describe(e ccError) string {
	switch {
	case e.Title != "" && e.Code != 0:
		return fmt.Sprintf("%s, code %d", clean(e.Title), e.Code)
	case e.Title != "":
		return clean(e.Title)
	case e.Code != 0:
		return fmt.Sprintf("code %d", e.Code)
	default:
		return "no error details"
	}
}

// describeAll is every error with its detail, for logs.
func describeAll(errs []ccError) string {
	if len(errs) == 0 {
		return "no Cloud Controller error body"
	}
	parts := make([]string, len(errs))
	for i, e := range errs {
		parts[i] = fmt.Sprintf("%s: %s", describe(e), clean(e.Detail))
	}
	return strings.Join(parts, "; ")
}

// clean shortens text from a response and replaces what is not printable.
func clean(s string) string { return problem.Clean(s) }
