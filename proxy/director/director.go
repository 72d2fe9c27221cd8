// Package director is a small BOSH director client: the calls
// pcap-server-api needs to decide who may capture which VMs of a
// deployment and where they are. Every call but /info is made with the
// user's own token, so the director applies its own rules. Errors are
// *problem.Error with a status the API can send as is.
package director

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/cloudfoundry/pcap-server-release/proxy/problem"
)

// DefaultTimeout bounds one call.
const DefaultTimeout = 10 * time.Second

// maxBodyBytes bounds what is read of any answer: the instances of a
// large deployment are a few hundred KiB.
const maxBodyBytes = 8 << 20

// Director error codes (bosh-director errors.rb) that change what
// pcap-server answers.
const (
	CodeDeploymentNotFound = 70000
	CodeUnauthorized       = 600000
)

// Config says which director to talk to and how.
type Config struct {
	// URL is the director's base URL, https://DIRECTOR:25555.
	URL string
	// HTTPClient must trust the director's CA.
	HTTPClient *http.Client
	// Timeout bounds each call; 0 means DefaultTimeout.
	Timeout time.Duration
}

// Client calls one director.
type Client struct {
	base    *url.URL
	http    *http.Client
	timeout time.Duration
}

// New checks cfg and returns a client.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(cfg.URL, "/"))
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("director URL %q is not an http(s) URL without query", cfg.URL)
	}
	c := &Client{base: u, http: cfg.HTTPClient, timeout: cfg.Timeout}
	if c.http == nil {
		c.http = &http.Client{}
	}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	return c, nil
}

// URL is the director's base URL.
func (c *Client) URL() string { return c.base.String() }

// Info is the part of GET /info pcap-server uses.
type Info struct {
	Name               string `json:"name"`
	UUID               string `json:"uuid"`
	Version            string `json:"version"`
	UserAuthentication struct {
		Type    string `json:"type"`
		Options struct {
			URL  string   `json:"url"`
			URLs []string `json:"urls"`
		} `json:"options"`
	} `json:"user_authentication"`
}

// Info reads GET /info, which needs no token.
func (c *Client) Info(ctx context.Context) (Info, error) {
	var info Info
	err := c.get(ctx, "", "/info", "the director's /info", &info)
	return info, err
}

// DiscoverIssuer returns the issuer of the director's UAA: /info's
// user_authentication.options.url plus /oauth/token (UAA's tokens carry
// the path), and the director's uuid, which names its admin scope.
func (c *Client) DiscoverIssuer(ctx context.Context) (issuer, uuid string, err error) {
	info, err := c.Info(ctx)
	if err != nil {
		return "", "", err
	}
	ua := info.UserAuthentication
	u, perr := url.Parse(ua.Options.URL)
	if ua.Type != "uaa" || perr != nil || u.Scheme != "https" || u.Host == "" {
		return "", "", problem.New(http.StatusBadGateway,
			"the director's /info names no UAA (user_authentication type %s, url %s): it must use UAA, and bosh.uaa.issuer can name it", quote(ua.Type), quote(ua.Options.URL))
	}
	return strings.TrimRight(ua.Options.URL, "/") + "/oauth/token", info.UUID, nil
}

// Deployment is an entry of GET /deployments.
type Deployment struct {
	Name  string   `json:"name"`
	Teams []string `json:"teams"`
}

// Deployments lists the deployments the token may read, with their teams.
func (c *Client) Deployments(ctx context.Context, token string) ([]Deployment, error) {
	var deps []Deployment
	err := c.get(ctx, token, "/deployments", "the deployments", &deps)
	return deps, err
}

// Instance is an entry of GET /deployments/{deployment}/instances. An
// instance without a VM has no CID, agent or IPs.
type Instance struct {
	AgentID   string   `json:"agent_id"`
	CID       string   `json:"cid"`
	Job       string   `json:"job"` // the instance group
	Index     *int     `json:"index"`
	ID        string   `json:"id"`
	AZ        string   `json:"az"`
	IPs       []string `json:"ips"`
	ExpectsVM bool     `json:"expects_vm"`
}

// Instances lists a deployment's instances, with the user's token.
func (c *Client) Instances(ctx context.Context, token, deployment string) ([]Instance, error) {
	var out []Instance
	err := c.get(ctx, token, "/deployments/"+url.PathEscape(deployment)+"/instances", "the instances of deployment "+quote(deployment), &out)
	return out, err
}

// Error is the director's error body.
type Error struct {
	Code        int    `json:"code"`
	Description string `json:"description"`
}

func (c *Client) get(ctx context.Context, token, path, what string, out any) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base.String()+path, nil)
	if err != nil {
		return problem.Wrap(err, http.StatusBadGateway, "cannot build a director request for %s", what)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "pcap-server")
	if token != "" {
		req.Header.Set("Authorization", "bearer "+token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return c.transportProblem(ctx, err, what)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBodyBytes+1))
	if err != nil {
		return c.transportProblem(ctx, err, what)
	}
	if len(body) > maxBodyBytes {
		return problem.New(http.StatusBadGateway, "the director's answer for %s is larger than %d bytes", what, maxBodyBytes)
	}
	if resp.StatusCode != http.StatusOK {
		return errorProblem(resp.StatusCode, body, what)
	}
	if err := json.Unmarshal(body, out); err != nil {
		return problem.Wrap(fmt.Errorf("decode %s: %w", path, err), http.StatusBadGateway, "the director sent an invalid answer for %s", what)
	}
	return nil
}

// errorProblem maps a director refusal to pcap-server's answer. The
// director answers 401 both to a token it does not accept (plain text)
// and, with code 600000, to a token whose scopes do not cover what was
// asked: the first is the caller's login (401), the second the caller's
// rights (403).
func errorProblem(status int, body []byte, what string) *problem.Error {
	var e Error
	isJSON := json.Unmarshal(body, &e) == nil && e.Code != 0
	cause := fmt.Errorf("director answered HTTP %d for %s: %s", status, what, problem.Clean(string(body)))
	switch {
	case isJSON && e.Code == CodeUnauthorized:
		return problem.Wrap(cause, http.StatusForbidden, "the director refused access to %s: %s", what, problem.Clean(e.Description))
	case isJSON && e.Code == CodeDeploymentNotFound:
		return problem.Wrap(cause, http.StatusNotFound, "%s", problem.Clean(e.Description))
	case status == http.StatusUnauthorized:
		return problem.Wrap(cause, http.StatusUnauthorized, "the director does not accept the token (%s); log in again with bosh log-in", problem.Clean(firstLine(body)))
	case status == http.StatusNotFound:
		return problem.Wrap(cause, http.StatusNotFound, "the director found no %s", what)
	case isJSON:
		return problem.Wrap(cause, http.StatusBadGateway, "the director refused the request for %s (HTTP %d, code %d: %s)", what, status, e.Code, problem.Clean(e.Description))
	case status >= 500:
		return problem.Wrap(cause, http.StatusBadGateway, "director error while fetching %s (HTTP %d)", what, status)
	default:
		return problem.Wrap(cause, http.StatusBadGateway, "the director refused the request for %s (HTTP %d)", what, status)
	}
}

// transportProblem explains a failure to get an answer at all.
func (c *Client) transportProblem(ctx context.Context, err error, what string) *problem.Error {
	return problem.Unreachable(ctx, err, "BOSH director", what, c.timeout)
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	return s
}

// quote quotes untrusted text for a message.
func quote(s string) string { return fmt.Sprintf("%q", problem.Clean(s)) }
