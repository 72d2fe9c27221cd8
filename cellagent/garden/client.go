package garden

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Garden's error types, the Type of its error body.
const (
	ContainerNotFoundError  = "ContainerNotFoundError"
	ServiceUnavailableError = "ServiceUnavailableError"
)

const (
	// DefaultCallTimeout bounds one garden request. Garden answers these
	// routes from memory in milliseconds; a slow answer means trouble.
	DefaultCallTimeout = 5 * time.Second
	// maxReply bounds a garden reply. A cell lists a few hundred handles
	// at most and a container's properties are a few kilobytes.
	maxReply = 1 << 20
	// baseURL is what garden's own client uses; the host is never dialled.
	baseURL = "http://api"
)

// Client speaks garden's HTTP API, on its unix socket or over TCP. It is
// safe for concurrent use.
type Client struct {
	network, address string
	timeout          time.Duration
	http             *http.Client
	transport        *http.Transport
}

// NewClient returns a client for garden at network ("unix" or "tcp") and
// address (the socket path, or host:port). callTimeout bounds each request
// (0: DefaultCallTimeout).
func NewClient(network, address string, callTimeout time.Duration) (*Client, error) {
	if network != "unix" && network != "tcp" {
		return nil, fmt.Errorf("garden network %q: want unix or tcp", network)
	}
	if address == "" {
		return nil, errors.New("garden address is empty")
	}
	if callTimeout <= 0 {
		callTimeout = DefaultCallTimeout
	}
	dialer := &net.Dialer{Timeout: callTimeout}
	t := &http.Transport{
		// Every request goes to garden, whatever the URL says; no proxy
		// from the environment may get in between.
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, network, address)
		},
		Proxy:               nil,
		DisableCompression:  true,
		MaxIdleConnsPerHost: 2,
		IdleConnTimeout:     30 * time.Second,
	}
	return &Client{
		network:   network,
		address:   address,
		timeout:   callTimeout,
		transport: t,
		http: &http.Client{
			Transport: t,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		},
	}, nil
}

// Where names the garden endpoint for messages: "unix socket PATH" or
// "tcp address HOST:PORT".
func (c *Client) Where() string {
	if c.network == "unix" {
		return "unix socket " + c.address
	}
	return "tcp address " + c.address
}

// Close drops idle connections.
func (c *Client) Close() { c.transport.CloseIdleConnections() }

// Error is an answer of garden other than 200: its error body when it sent
// one (garden's JSON keys are its Go field names).
type Error struct {
	Status  int
	Type    string
	Message string
	Handle  string
}

func (e *Error) Error() string {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.Status)
	}
	if e.Type != "" {
		return fmt.Sprintf("garden answered %d %s: %s", e.Status, e.Type, msg)
	}
	return fmt.Sprintf("garden answered %d: %s", e.Status, msg)
}

// IsContainerNotFound reports whether err is garden's answer that a
// container does not exist. A bare 404 is not: that is a route garden
// lacks.
func IsContainerNotFound(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Type == ContainerNotFoundError
}

// Ping checks that garden answers.
func (c *Client) Ping(ctx context.Context) error {
	var reply struct{}
	return c.get(ctx, "/ping", nil, &reply)
}

// Containers lists the handles of the containers whose properties equal
// every entry of filter. Garden itself adds garden.state=created unless
// the filter names garden.state.
func (c *Client) Containers(ctx context.Context, filter map[string]string) ([]string, error) {
	q := url.Values{}
	for k, v := range filter {
		q.Set(k, v)
	}
	var reply struct{ Handles []string }
	if err := c.get(ctx, "/containers", q, &reply); err != nil {
		return nil, err
	}
	return reply.Handles, nil
}

// Properties returns a container's properties. Garden answers a handle
// it does not know with 200 and null, not with the 404 of its other
// container routes: that is an *Error of type ContainerNotFoundError here
// too.
func (c *Client) Properties(ctx context.Context, handle string) (map[string]string, error) {
	var props map[string]string
	path := "/containers/" + url.PathEscape(handle) + "/properties"
	if err := c.get(ctx, path, nil, &props); err != nil {
		return nil, err
	}
	if props == nil {
		return nil, fmt.Errorf("garden GET %s: %w", path, &Error{Status: http.StatusOK, Type: ContainerNotFoundError,
			Message: "null: no properties, so no container " + handle, Handle: handle})
	}
	return props, nil
}

// ContainerInfo is the part of garden's container info the agent reads.
type ContainerInfo struct {
	State         string
	HostIP        string
	ContainerIP   string
	ExternalIP    string
	ContainerPath string
	Properties    map[string]string
}

// Info returns a container's info.
func (c *Client) Info(ctx context.Context, handle string) (ContainerInfo, error) {
	var info ContainerInfo
	err := c.get(ctx, "/containers/"+url.PathEscape(handle)+"/info", nil, &info)
	return info, err
}

// get does one GET and decodes a 200 reply into v. Failures name the
// request; a reply other than 200 is an *Error.
func (c *Client) get(ctx context.Context, path string, q url.Values, v any) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	u := baseURL + path
	if len(q) > 0 {
		// Encode escapes the colon of executor:owner as %3A, like
		// garden's own client.
		u += "?" + q.Encode()
	}
	what := "GET " + path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("garden %s: %w", what, err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		// url.Error would quote the URL, whose host "api" is never
		// dialled; the cause underneath says what happened.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("garden %s: %w", what, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxReply+1))
	if err != nil {
		return fmt.Errorf("garden %s: read reply: %w", what, err)
	}
	if len(body) > maxReply {
		return fmt.Errorf("garden %s: reply exceeds %d bytes", what, maxReply)
	}
	if err := decodeReply(resp.StatusCode, body, v); err != nil {
		return fmt.Errorf("garden %s: %w", what, err)
	}
	return nil
}

// decodeReply decodes a 200 body into v, and any other status into an
// *Error from garden's error body (or the first line of whatever else came).
func decodeReply(status int, body []byte, v any) error {
	if status == http.StatusOK {
		if err := json.Unmarshal(body, v); err != nil {
			return fmt.Errorf("decode reply: %w", err)
		}
		return nil
	}
	e := &Error{Status: status}
	var ge struct{ Type, Message, Handle string }
	if json.Unmarshal(body, &ge) == nil {
		e.Type, e.Message, e.Handle = ge.Type, ge.Message, ge.Handle
	} else {
		line, _, _ := bytes.Cut(bytes.TrimSpace(body), []byte("\n"))
		e.Message = strings.ToValidUTF8(string(line[:min(len(line), 200)]), "?")
	}
	return e
}
