// Package uaatoken asks a UAA's token endpoint for access tokens as the cf
// and bosh CLIs do: the refresh_token grant for users, client_credentials
// for clients, the client authenticated with HTTP Basic.
package uaatoken

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// maxReply bounds how much of a UAA reply is read.
const maxReply = 1 << 20

// Reply is a successful answer of POST /oauth/token.
type Reply struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	RefreshToken string `json:"refresh_token"`
	ExpiresIn    int64  `json:"expires_in"`
}

// RefusedError is UAA refusing the grant (a 4xx): the refresh token
// expired or was revoked, or the client's credentials are wrong.
type RefusedError struct {
	StatusCode int
	// Code and Description are UAA's error and error_description.
	Code        string
	Description string
}

func (e *RefusedError) Error() string {
	return "UAA refused to issue an access token: " + e.Reason()
}

// Reason is UAA's description, its code, or the status.
func (e *RefusedError) Reason() string {
	switch {
	case e.Description != "":
		return e.Description
	case e.Code != "":
		return e.Code
	}
	return fmt.Sprintf("HTTP %d", e.StatusCode)
}

// Request posts form to tokenURL (https://UAA/oauth/token) as client.
func Request(ctx context.Context, hc *http.Client, tokenURL string, form url.Values, client, secret string) (Reply, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, tokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return Reply{}, fmt.Errorf("get an access token: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.SetBasicAuth(client, secret)
	resp, err := hc.Do(req)
	if err != nil {
		return Reply{}, fmt.Errorf("get an access token at %s: %w", tokenURL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxReply))
	if err != nil {
		return Reply{}, fmt.Errorf("get an access token at %s: read reply: %w", tokenURL, err)
	}
	var reply struct {
		Reply
		Error            string `json:"error"`
		ErrorDescription string `json:"error_description"`
	}
	jsonErr := json.Unmarshal(body, &reply)
	switch {
	case resp.StatusCode == http.StatusOK:
		if jsonErr != nil {
			return Reply{}, fmt.Errorf("get an access token at %s: reply: %w", tokenURL, jsonErr)
		}
		if reply.AccessToken == "" {
			return Reply{}, fmt.Errorf("get an access token at %s: reply has no access_token", tokenURL)
		}
		return reply.Reply, nil
	case resp.StatusCode >= 400 && resp.StatusCode < 500:
		refused := &RefusedError{StatusCode: resp.StatusCode}
		if jsonErr == nil {
			refused.Code, refused.Description = reply.Error, reply.ErrorDescription
		}
		return Reply{}, refused
	}
	return Reply{}, fmt.Errorf("get an access token at %s: UAA answered %s: %s", tokenURL, resp.Status, snippet(body))
}

func snippet(body []byte) string {
	const limit = 200
	s := strings.TrimSpace(string(body))
	if len(s) > limit {
		s = s[:limit] + "..."
	}
	return s
}
