// Package cloudcontroller is a small Cloud Controller v3 client: the calls
// pcap-server needs to decide who may capture which app and where its
// instances run. Every call is made with the user's own token, so the
// Cloud Controller applies its own visibility rules. Errors are
// *problem.Error with a status the API can send as is.
//
// It has no cgo or libpcap dependency: the CLI uses it too.
package cloudcontroller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/cloudfoundry/pcap-server-release/proxy/problem"
)

// DefaultTimeout bounds one method call, all pages included.
const DefaultTimeout = 10 * time.Second

// maxBodyBytes bounds what is read of any response. The largest expected
// body, the stats of a process with a few thousand instances, stays well
// below it.
const maxBodyBytes = 8 << 20

// maxPages stops a paginated listing that never ends.
const maxPages = 1000

// Config says which Cloud Controller to talk to and how.
type Config struct {
	// URL is the API base, for example https://api.SYS.
	URL string
	// HTTPClient should trust the Cloud Controller's CA; nil means the
	// system roots.
	HTTPClient *http.Client
	// Timeout bounds each method call; 0 means DefaultTimeout.
	Timeout time.Duration
	// Logger gets the Cloud Controller's warnings; nil discards them.
	Logger *slog.Logger
}

// Client calls one Cloud Controller.
type Client struct {
	base    *url.URL
	http    *http.Client
	timeout time.Duration
	log     *slog.Logger
}

// New checks cfg and returns a client.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(cfg.URL, "/"))
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("cloud controller URL %q is not an http(s) URL", cfg.URL)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("cloud controller URL %q must not have a query or fragment", cfg.URL)
	}
	c := &Client{base: u, http: cfg.HTTPClient, timeout: cfg.Timeout, log: cfg.Logger}
	if c.http == nil {
		c.http = &http.Client{}
	}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// URL is the Cloud Controller's base URL.
func (c *Client) URL() string { return c.base.String() }

// Root is the part of the root document (GET /) pcap-server uses.
type Root struct {
	CloudControllerV3 string // href of the v3 API
	APIVersion        string // v3 API version, like 3.195.0
	UAA               string // UAA base URL, like https://uaa.SYS
	Login             string // login server URL, where the cf CLI refreshes tokens
}

type rootDocument struct {
	Links struct {
		V3 struct {
			Href string `json:"href"`
			Meta struct {
				Version string `json:"version"`
			} `json:"meta"`
		} `json:"cloud_controller_v3"`
		UAA   *link `json:"uaa"`
		Login *link `json:"login"`
	} `json:"links"`
}

type link struct {
	Href string `json:"href"`
}

// Root reads the root document; it needs no token.
func (c *Client) Root(ctx context.Context) (Root, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var doc rootDocument
	if err := c.get(ctx, "", c.endpoint("/", nil), "the Cloud Controller root document", &doc); err != nil {
		return Root{}, err
	}
	r := Root{CloudControllerV3: doc.Links.V3.Href, APIVersion: doc.Links.V3.Meta.Version}
	if doc.Links.UAA != nil {
		r.UAA = doc.Links.UAA.Href
	}
	if doc.Links.Login != nil {
		r.Login = doc.Links.Login.Href
	}
	return r, nil
}

// DiscoverIssuer returns the issuer of the UAA the Cloud Controller trusts:
// links.uaa.href plus /oauth/token (UAA's tokens carry the path, so
// links.uaa alone does not match them).
func (c *Client) DiscoverIssuer(ctx context.Context) (string, error) {
	r, err := c.Root(ctx)
	if err != nil {
		return "", err
	}
	u, err := url.Parse(r.UAA)
	if err != nil || r.UAA == "" || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return "", problem.Wrap(fmt.Errorf("links.uaa.href %q", r.UAA), http.StatusBadGateway,
			"the Cloud Controller root document has no usable UAA link")
	}
	return strings.TrimRight(r.UAA, "/") + "/oauth/token", nil
}

// App is an app as pcap-server needs it.
type App struct {
	GUID      string
	Name      string
	State     string // STARTED or STOPPED
	SpaceGUID string
	SpaceName string // empty if the Cloud Controller did not include it
}

type appResource struct {
	GUID          string `json:"guid"`
	Name          string `json:"name"`
	State         string `json:"state"`
	Relationships struct {
		Space relationship `json:"space"`
	} `json:"relationships"`
}

type relationship struct {
	Data *struct {
		GUID string `json:"guid"`
	} `json:"data"`
}

func (r relationship) guid() string {
	if r.Data == nil {
		return ""
	}
	return r.Data.GUID
}

type includedSpaces struct {
	Included struct {
		Spaces []struct {
			GUID string `json:"guid"`
			Name string `json:"name"`
		} `json:"spaces"`
	} `json:"included"`
}

func (inc includedSpaces) app(r appResource) App {
	a := App{GUID: r.GUID, Name: r.Name, State: r.State, SpaceGUID: r.Relationships.Space.guid()}
	for _, s := range inc.Included.Spaces {
		if s.GUID == a.SpaceGUID {
			a.SpaceName = s.Name
		}
	}
	return a
}

// App fetches an app with the user's token. Not found and not visible to
// the user are the same 404, as the Cloud Controller does not tell them
// apart.
func (c *Client) App(ctx context.Context, token, guid string) (App, error) {
	what := fmt.Sprintf("app %s", quoteUntrusted(guid))
	if !validSegment(guid) {
		return App{}, problem.New(http.StatusNotFound, "%s not found", what)
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var body struct {
		appResource
		includedSpaces
	}
	q := url.Values{"include": {"space"}}
	if err := c.get(ctx, token, c.endpoint("/v3/apps/"+url.PathEscape(guid), q), what, &body); err != nil {
		return App{}, notVisible(err, what)
	}
	if !strings.EqualFold(body.GUID, guid) {
		return App{}, problem.New(http.StatusBadGateway, "the Cloud Controller answered with app %s when asked for %s",
			quoteUntrusted(body.GUID), what)
	}
	return body.includedSpaces.app(body.appResource), nil
}

// notVisible words a 404 for an app: not found and not visible to the
// user are the same answer from the Cloud Controller.
func notVisible(err error, app string) error {
	var p *problem.Error
	if errors.As(err, &p) && p.Status == http.StatusNotFound {
		return problem.Wrap(p.Err, http.StatusNotFound, "%s not found or not visible to you", app)
	}
	return err
}

// SSHStatus is an app's SSH policy as the Cloud Controller combines it
// from the operator's, the space's and the app's switches.
type SSHStatus struct {
	Enabled bool
	// Reason names the switch that is off, in the Cloud Controller's
	// words ("ssh is disabled for space 'prod'"), shortened and made
	// printable; empty when SSH is enabled.
	Reason string
}

// SSHEnabled asks whether the app's instances accept cf ssh
// (GET /v3/apps/:guid/ssh_enabled), with the user's token: an app the
// user cannot read is a 404 like App's.
func (c *Client) SSHEnabled(ctx context.Context, token, appGUID string) (SSHStatus, error) {
	app := fmt.Sprintf("app %s", quoteUntrusted(appGUID))
	if !validSegment(appGUID) {
		return SSHStatus{}, problem.New(http.StatusNotFound, "%s not found", app)
	}
	what := "the SSH policy of " + app
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	rawURL := c.endpoint("/v3/apps/"+url.PathEscape(appGUID)+"/ssh_enabled", nil)
	body, err := c.fetch(ctx, token, rawURL, what)
	if err != nil {
		return SSHStatus{}, notVisible(err, app)
	}
	s, err := decodeSSHEnabled(body)
	if err != nil {
		return SSHStatus{}, problem.Wrap(fmt.Errorf("decode %s: %w", rawURL, err), http.StatusBadGateway,
			"the Cloud Controller sent an invalid answer for %s", what)
	}
	return s, nil
}

// decodeSSHEnabled reads {"enabled": bool, "reason": "..."}. An answer
// without "enabled" is invalid rather than "disabled" or "enabled": the
// caller then refuses with a 502 that says what went wrong.
func decodeSSHEnabled(body []byte) (SSHStatus, error) {
	var doc struct {
		Enabled *bool   `json:"enabled"`
		Reason  *string `json:"reason"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return SSHStatus{}, err
	}
	if doc.Enabled == nil {
		return SSHStatus{}, errors.New(`no boolean "enabled" in the answer`)
	}
	s := SSHStatus{Enabled: *doc.Enabled}
	if doc.Reason != nil {
		s.Reason = clean(strings.TrimSpace(*doc.Reason))
	}
	return s, nil
}

// AppByName finds an app by its exact name in a space.
func (c *Client) AppByName(ctx context.Context, token, name, spaceGUID string) (App, error) {
	what := fmt.Sprintf("app %s in space %s", quoteUntrusted(name), quoteUntrusted(spaceGUID))
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	q := url.Values{"names": {name}, "space_guids": {spaceGUID}, "include": {"space"}}
	var found *App
	err := eachPage(ctx, c, token, c.endpoint("/v3/apps", q), what, func(p page[appResource]) (bool, error) {
		var inc includedSpaces
		if err := json.Unmarshal(p.raw, &inc); err != nil {
			return false, err
		}
		for _, r := range p.Resources {
			// The names filter is a comma-separated list, so a name
			// with a comma would match other apps.
			if r.Name == name && r.Relationships.Space.guid() == spaceGUID {
				a := inc.app(r)
				found = &a
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return App{}, err
	}
	if found == nil {
		return App{}, problem.New(http.StatusNotFound, "%s not found", what)
	}
	return *found, nil
}

type roleResource struct {
	GUID          string `json:"guid"`
	Type          string `json:"type"`
	Relationships struct {
		User  relationship `json:"user"`
		Space relationship `json:"space"`
	} `json:"relationships"`
}

// HasSpaceRole reports whether userGUID (a user id, or a client id for
// client tokens) holds roleType (for example space_developer) in a space,
// as seen with the caller's token. A role counts only when the Cloud
// Controller lists it with exactly that type, space and user, so a filter
// the Cloud Controller ignored cannot grant anything.
func (c *Client) HasSpaceRole(ctx context.Context, token, roleType, spaceGUID, userGUID string) (bool, error) {
	what := fmt.Sprintf("%s roles in space %s", roleType, quoteUntrusted(spaceGUID))
	if roleType == "" || spaceGUID == "" || userGUID == "" {
		return false, nil
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	q := url.Values{"types": {roleType}, "space_guids": {spaceGUID}, "user_guids": {userGUID}}
	found := false
	err := eachPage(ctx, c, token, c.endpoint("/v3/roles", q), what, func(p page[roleResource]) (bool, error) {
		for _, r := range p.Resources {
			if r.Type == roleType && r.Relationships.Space.guid() == spaceGUID && r.Relationships.User.guid() == userGUID {
				found = true
				return false, nil
			}
		}
		return true, nil
	})
	return found, err
}

// InstanceStats is one instance of a process, from the stats endpoint.
type InstanceStats struct {
	Type  string
	Index int
	State string // RUNNING, STARTING, CRASHED, STOPPING or DOWN
	// Host is the Diego cell's IP; empty when DOWN and sometimes while
	// STARTING.
	Host string
	// InstanceGUID is the garden container handle; empty on older Cloud
	// Controllers (API < 3.192.0) and for DOWN instances.
	InstanceGUID string
	InternalIP   string
	Uptime       int64
	Details      string
}

type statsResource struct {
	Type         string  `json:"type"`
	Index        int     `json:"index"`
	State        string  `json:"state"`
	Host         string  `json:"host"`
	InstanceGUID string  `json:"instance_guid"`
	InternalIP   string  `json:"instance_internal_ip"`
	Uptime       int64   `json:"uptime"`
	Details      *string `json:"details"`
}

// ProcessStats lists the instances of an app's process (web, worker, ...)
// in index order.
func (c *Client) ProcessStats(ctx context.Context, token, appGUID, processType string) ([]InstanceStats, error) {
	what := fmt.Sprintf("process %s of app %s", quoteUntrusted(processType), quoteUntrusted(appGUID))
	if !validSegment(appGUID) || !validSegment(processType) {
		return nil, problem.New(http.StatusNotFound, "%s not found", what)
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	path := "/v3/apps/" + url.PathEscape(appGUID) + "/processes/" + url.PathEscape(processType) + "/stats"
	rawURL := c.endpoint(path, nil)
	body, err := c.fetch(ctx, token, rawURL, what)
	if err != nil {
		return nil, err
	}
	stats, err := decodeStats(body)
	if err != nil {
		return nil, problem.Wrap(fmt.Errorf("decode %s: %w", rawURL, err), http.StatusBadGateway,
			"the Cloud Controller sent invalid stats for %s", what)
	}
	return stats, nil
}

// decodeStats reads {"resources":[...]} of the stats endpoint. Fields
// absent for some states (host, instance_guid) read as empty.
func decodeStats(body []byte) ([]InstanceStats, error) {
	var doc struct {
		Resources []statsResource `json:"resources"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, err
	}
	out := make([]InstanceStats, 0, len(doc.Resources))
	for _, r := range doc.Resources {
		s := InstanceStats{
			Type: r.Type, Index: r.Index, State: r.State, Host: r.Host,
			InstanceGUID: r.InstanceGUID, InternalIP: r.InternalIP, Uptime: r.Uptime,
		}
		if r.Details != nil {
			s.Details = *r.Details
		}
		out = append(out, s)
	}
	return out, nil
}

// validSegment refuses path segments that would change the path the Cloud
// Controller sees even when escaped.
func validSegment(s string) bool { return s != "" && s != "." && s != ".." }

// endpoint is an absolute URL under the base; escapedPath has its
// segments escaped already.
func (c *Client) endpoint(escapedPath string, q url.Values) string {
	s := strings.TrimRight(c.base.String(), "/") + escapedPath
	if len(q) > 0 {
		s += "?" + q.Encode()
	}
	return s
}

// get fetches rawURL and decodes a 2xx JSON body into out. what names the
// resource in messages ("app 1234").
func (c *Client) get(ctx context.Context, token, rawURL, what string, out any) error {
	body, err := c.fetch(ctx, token, rawURL, what)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(body, out); err != nil {
		return problem.Wrap(fmt.Errorf("decode %s: %w", redactQuery(rawURL), err), http.StatusBadGateway,
			"the Cloud Controller sent an invalid response for %s", what)
	}
	return nil
}

// fetch does one GET and returns the body of a 2xx answer.
func (c *Client) fetch(ctx context.Context, token, rawURL, what string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, problem.Wrap(err, http.StatusBadGateway, "cannot build a Cloud Controller request for %s", what)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "pcap-server")
	if token != "" {
		req.Header.Set("Authorization", "bearer "+stripBearer(token))
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, c.transportProblem(ctx, err, what)
	}
	defer resp.Body.Close()
	c.logWarnings(resp, req.URL.Path)
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBodyBytes+1))
	if err != nil {
		return nil, c.transportProblem(ctx, err, what)
	}
	if len(body) > maxBodyBytes {
		return nil, problem.New(http.StatusBadGateway, "the Cloud Controller response for %s is larger than %d bytes", what, maxBodyBytes)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, errorProblem(resp.StatusCode, body, what)
	}
	return body, nil
}

// transportProblem explains a failure to get an answer at all. These are
// 503: the Cloud Controller may be back in a moment.
func (c *Client) transportProblem(ctx context.Context, err error, what string) *problem.Error {
	return problem.Unreachable(ctx, err, "Cloud Controller", what, c.timeout)
}

// logWarnings logs X-Cf-Warnings; they are for operators, not callers.
func (c *Client) logWarnings(resp *http.Response, path string) {
	for _, h := range resp.Header.Values("X-Cf-Warnings") {
		for _, w := range strings.Split(h, ",") {
			if text, err := url.QueryUnescape(strings.TrimSpace(w)); err == nil && text != "" {
				c.log.Warn("cloud controller warning", "path", path, "warning", text)
			}
		}
	}
}

func stripBearer(token string) string {
	if len(token) > 7 && strings.EqualFold(token[:7], "bearer ") {
		return strings.TrimSpace(token[7:])
	}
	return token
}

// redactQuery keeps query values (names, guids) out of error causes that
// end in logs next to other users' requests; the path is enough.
func redactQuery(rawURL string) string {
	if u, err := url.Parse(rawURL); err == nil {
		u.RawQuery = ""
		return u.String()
	}
	return "(unparsable URL)"
}

// quoteUntrusted quotes text from a request or a response for a message,
// shortened.
func quoteUntrusted(s string) string {
	const max = 100
	if len(s) > max {
		s = s[:max] + "..."
	}
	return fmt.Sprintf("%q", s)
}
