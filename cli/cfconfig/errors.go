package cfconfig

import (
	"errors"
	"fmt"
)

var (
	// ErrNotLoggedIn: no config file, no access token, or a file the cf CLI
	// itself would ignore.
	ErrNotLoggedIn = errors.New("not logged in: run `cf login`")
	// ErrNoTarget: the cf CLI has no API endpoint.
	ErrNoTarget = errors.New("no API endpoint targeted: run `cf api URL` and `cf login`")
	// ErrNoSpace: no space is targeted.
	ErrNoSpace = errors.New("no space targeted: run `cf target -o ORG -s SPACE`")
	// ErrCannotRefresh: the token expired and the file holds nothing to get
	// a new one with.
	ErrCannotRefresh = errors.New("the access token expired and cannot be refreshed")
)

// RefreshError is UAA refusing to refresh the token, typically because the
// refresh token expired or was revoked.
type RefreshError struct {
	StatusCode int
	// Code and Description are UAA's error and error_description.
	Code        string
	Description string
}

func (e *RefreshError) Error() string {
	reason := e.Description
	if reason == "" {
		reason = e.Code
	}
	if reason == "" {
		reason = fmt.Sprintf("HTTP %d", e.StatusCode)
	}
	return fmt.Sprintf("UAA refused to refresh the access token: %s: run `cf login`", reason)
}
