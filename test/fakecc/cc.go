// Package fakecc is a fake Cloud Controller (v3): a real HTTPS server on
// loopback with a small in-memory model of orgs, spaces, apps, roles,
// process instances and the SSH switches, answering with CC's JSON shapes,
// errors and pagination, and checking tokens minted by a fakeuaa.UAA as CC
// does.
package fakecc

import (
	"cmp"
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudfoundry/pcap-server-release/test/fakeserver"
	"github.com/cloudfoundry/pcap-server-release/test/fakeuaa"
)

// Cloud Controller endpoints, as counted by (*CloudController).Requests and
// as keys for (*CloudController).Inject.
const (
	GetRoot         = "GET /{$}"
	GetApp          = "GET /v3/apps/{guid}"
	ListApps        = "GET /v3/apps"
	ListRoles       = "GET /v3/roles"
	GetProcessStats = "GET /v3/apps/{guid}/processes/{type}/stats"
	GetSSHEnabled   = "GET /v3/apps/{guid}/ssh_enabled"
	ListOrgs        = "GET /v3/organizations"
	ListSpaces      = "GET /v3/spaces"
	// AnyEndpoint as an Inject key applies to every request.
	AnyEndpoint = ""
)

// Role types, as the Cloud Controller spells them.
const (
	RoleSpaceDeveloper = "space_developer"
	RoleSpaceManager   = "space_manager"
	RoleSpaceAuditor   = "space_auditor"
	RoleSpaceSupporter = "space_supporter"
	RoleOrgManager     = "organization_manager"
	RoleOrgAuditor     = "organization_auditor"
	RoleOrgUser        = "organization_user"
)

// Process instance states.
const (
	StateRunning  = "RUNNING"
	StateStarting = "STARTING"
	StateCrashed  = "CRASHED"
	StateStopping = "STOPPING"
	StateDown     = "DOWN"
)

// APIVersion is the v3 API version the fake claims.
const APIVersion = "3.195.0"

// Org is an organization.
type Org struct{ GUID, Name string }

// Space is a space in an org. AllowSSH is the space's allow_ssh switch
// (true unless SetSpaceAllowSSH turned it off).
type Space struct {
	GUID, Name, OrgGUID string
	AllowSSH            bool
}

// App is an app in a space; State is STARTED or STOPPED. EnableSSH is the
// app's enable_ssh switch (true unless SetAppEnableSSH turned it off, as
// with cc.default_app_ssh_access, true in cf-deployment).
type App struct {
	GUID, Name, SpaceGUID, State string
	EnableSSH                    bool
}

// Role gives a user (or a client, by its client id) a role in a space or,
// for organization_* types, in an org.
type Role struct{ GUID, Type, UserGUID, SpaceGUID, OrgGUID string }

// ProcessInstance is one instance in the stats of a process.
type ProcessInstance struct {
	Index int
	State string
	// Host is the Diego cell IP; empty is sent as "" (STARTING) except for
	// DOWN, which has no host at all.
	Host string
	// InstanceGUID is sent only when set (CC API >= 3.192.0 and not DOWN).
	InstanceGUID string
	InternalIP   string
	Uptime       int64
	Details      string
}

// Error is one entry of a Cloud Controller error body.
type Error struct {
	Code   int    `json:"code"`
	Title  string `json:"title"`
	Detail string `json:"detail"`
}

type knownError struct {
	status int
	err    Error
}

// knownErrors are entries of cloud_controller_ng's errors/v2.yml.
var knownErrors = map[int]knownError{
	1000:   {401, Error{1000, "CF-InvalidAuthToken", "Invalid Auth Token"}},
	10001:  {500, Error{10001, "CF-ServerError", "Server error"}},
	10002:  {401, Error{10002, "CF-NotAuthenticated", "Authentication error"}},
	10003:  {403, Error{10003, "CF-NotAuthorized", "You are not authorized to perform the requested action"}},
	10005:  {400, Error{10005, "CF-BadQueryParameter", "The query parameter is invalid"}},
	10007:  {403, Error{10007, "CF-InsufficientScope", "Your token lacks the necessary scopes to access this resource."}},
	10008:  {422, Error{10008, "CF-UnprocessableEntity", "Unprocessable entity"}},
	10010:  {404, Error{10010, "CF-ResourceNotFound", "Resource not found"}},
	10013:  {429, Error{10013, "CF-RateLimitExceeded", "Rate Limit Exceeded"}},
	10015:  {503, Error{10015, "CF-ServiceUnavailable", "Service Unavailable"}},
	10017:  {403, Error{10017, "CF-OrgSuspended", "The organization is suspended"}},
	20004:  {503, Error{20004, "CF-UaaUnavailable", "The UAA service is currently unavailable"}},
	200002: {503, Error{200002, "CF-StatsUnavailable", "Stats server temporarily unavailable."}},
	220002: {503, Error{220002, "CF-InstancesUnavailable", "Instances information unavailable"}},
}

// KnownError is the Cloud Controller's error for code (for example 10010)
// with its usual detail. Unknown codes give CF-ServerError.
func KnownError(code int) Error {
	if k, ok := knownErrors[code]; ok {
		return k.err
	}
	return knownErrors[10001].err
}

// Fault changes how the fake answers an endpoint.
type Fault struct {
	// Delay holds the answer back; it ends early when the client goes away
	// or the server closes.
	Delay time.Duration
	// Warnings are sent in X-Cf-Warnings (URL-encoded, comma-separated).
	Warnings []string
	// Drop closes the connection without an answer.
	Drop bool
	// Status, when set, replaces the real answer: with Body if set, else
	// with Errors, else with the usual error for that status.
	Status int
	Errors []Error
	Body   string
}

// CloudController is a fake Cloud Controller.
type CloudController struct {
	// URL is the base URL, like https://api.SYS.
	URL string
	// CA signed the server certificate.
	CA *fakeserver.CA

	uaa     *fakeuaa.UAA
	srv     *httptest.Server
	closing chan struct{}
	once    sync.Once

	mu        sync.Mutex
	seq       int
	sshOff    bool // cc.allow_app_ssh_access: false
	created   map[string]time.Time
	orgs      map[string]Org
	spaces    map[string]Space
	apps      []App // in creation order, as CC lists them by default
	roles     []Role
	processes map[string]map[string][]ProcessInstance // app guid -> type -> instances
	faults    map[string]Fault
	requests  map[string]int
	// counted is closed and replaced whenever a request is counted, to
	// wake WaitRequests.
	counted chan struct{}
}

// Option changes how New sets the fake up.
type Option func(*options)

type options struct {
	names []string
}

// ServerNames puts names (such as api.sys.example.test) into the server's
// certificate beside loopback, for clients like the cf CLI that reach the
// Cloud Controller by name through a hosts file of their own.
func ServerNames(names ...string) Option {
	return func(o *options) { o.names = append(o.names, names...) }
}

// New starts a fake Cloud Controller that accepts the tokens
// uaa mints. It stops when the test ends.
func New(tb testing.TB, uaa *fakeuaa.UAA, opts ...Option) *CloudController {
	tb.Helper()
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	ca, err := fakeserver.NewCA("fake Cloud Controller CA")
	if err != nil {
		tb.Fatalf("fake Cloud Controller: %v", err)
	}
	tlsCfg, err := ca.ServerTLS("api", o.names...)
	if err != nil {
		tb.Fatalf("fake Cloud Controller: %v", err)
	}
	cc := &CloudController{
		CA:        ca,
		uaa:       uaa,
		closing:   make(chan struct{}),
		created:   map[string]time.Time{},
		orgs:      map[string]Org{},
		spaces:    map[string]Space{},
		processes: map[string]map[string][]ProcessInstance{},
		faults:    map[string]Fault{},
		requests:  map[string]int{},
		counted:   make(chan struct{}),
	}
	mux := http.NewServeMux()
	mux.HandleFunc(GetRoot, cc.serveRoot)
	mux.HandleFunc(GetApp, cc.authenticated(cc.appResource([]string{"include"}, cc.serveApp)))
	mux.HandleFunc(ListApps, cc.authenticated(cc.serveApps))
	mux.HandleFunc(ListRoles, cc.authenticated(cc.serveRoles))
	mux.HandleFunc(GetProcessStats, cc.authenticated(cc.appResource(nil, cc.serveProcessStats)))
	mux.HandleFunc(GetSSHEnabled, cc.authenticated(cc.appResource(nil, cc.serveSSHEnabled)))
	mux.HandleFunc(ListOrgs, cc.authenticated(cc.serveOrgs))
	mux.HandleFunc(ListSpaces, cc.authenticated(cc.serveSpaces))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeCCError(w, http.StatusNotFound, Error{10000, "CF-NotFound", "Unknown request"})
	})
	cc.srv = fakeserver.StartTLS(cc.intercept(mux), tlsCfg, nil)
	cc.URL = cc.srv.URL
	tb.Cleanup(cc.Close)
	return cc
}

// Close stops the server, ending delayed answers first.
func (cc *CloudController) Close() {
	cc.once.Do(func() { close(cc.closing) })
	cc.srv.Close()
}

// Client is an HTTP client that trusts this Cloud Controller's CA only.
func (cc *CloudController) Client() *http.Client { return cc.CA.Client() }

// AddOrg creates an org.
func (cc *CloudController) AddOrg(name string) Org {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	o := Org{GUID: cc.newGUID(), Name: name}
	cc.orgs[o.GUID] = o
	return o
}

// AddSpace creates a space in an org.
func (cc *CloudController) AddSpace(orgGUID, name string) Space {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	s := Space{GUID: cc.newGUID(), Name: name, OrgGUID: orgGUID, AllowSSH: true}
	cc.spaces[s.GUID] = s
	return s
}

// AddApp creates a STARTED app with a web process that has no instances
// yet.
func (cc *CloudController) AddApp(spaceGUID, name string) App {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	a := App{GUID: cc.newGUID(), Name: name, SpaceGUID: spaceGUID, State: "STARTED", EnableSSH: true}
	cc.apps = append(cc.apps, a)
	cc.processes[a.GUID] = map[string][]ProcessInstance{"web": nil}
	return a
}

// SetAppState sets an app's state (STARTED or STOPPED).
func (cc *CloudController) SetAppState(appGUID, state string) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if i := slices.IndexFunc(cc.apps, func(a App) bool { return a.GUID == appGUID }); i >= 0 {
		cc.apps[i].State = state
	}
}

// SetGlobalAllowSSH is the operator's switch (cc.allow_app_ssh_access in
// the Cloud Controller's job); true at the start.
func (cc *CloudController) SetGlobalAllowSSH(allow bool) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	cc.sshOff = !allow
}

// SetSpaceAllowSSH is a space's allow_ssh (cf allow-space-ssh /
// disallow-space-ssh).
func (cc *CloudController) SetSpaceAllowSSH(spaceGUID string, allow bool) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if s, ok := cc.spaces[spaceGUID]; ok {
		s.AllowSSH = allow
		cc.spaces[spaceGUID] = s
	}
}

// SetAppEnableSSH is an app's enable_ssh (cf enable-ssh / disable-ssh).
func (cc *CloudController) SetAppEnableSSH(appGUID string, enable bool) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if i := slices.IndexFunc(cc.apps, func(a App) bool { return a.GUID == appGUID }); i >= 0 {
		cc.apps[i].EnableSSH = enable
	}
}

// SetInstances replaces the instances of an app's process, creating the
// process type if needed.
func (cc *CloudController) SetInstances(appGUID, processType string, instances ...ProcessInstance) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.processes[appGUID] == nil {
		cc.processes[appGUID] = map[string][]ProcessInstance{}
	}
	cc.processes[appGUID][processType] = slices.Clone(instances)
}

// AddRole gives userGUID a role. Space role types take a space GUID,
// organization_* types an org GUID.
func (cc *CloudController) AddRole(roleType, userGUID, spaceOrOrgGUID string) Role {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	r := Role{GUID: cc.newGUID(), Type: roleType, UserGUID: userGUID}
	if strings.HasPrefix(roleType, "organization_") {
		r.OrgGUID = spaceOrOrgGUID
	} else {
		r.SpaceGUID = spaceOrOrgGUID
	}
	cc.roles = append(cc.roles, r)
	return r
}

// Inject makes endpoint (GetApp, ..., or AnyEndpoint) answer with f until Clear.
func (cc *CloudController) Inject(endpoint string, f Fault) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	cc.faults[endpoint] = f
}

// Clear removes all injected faults.
func (cc *CloudController) Clear() {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	clear(cc.faults)
}

// Requests is how many requests an endpoint (GetApp, ...) received,
// including rejected ones.
func (cc *CloudController) Requests(endpoint string) int {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.requests[endpoint]
}

// TotalRequests is how many requests the Cloud Controller received on any
// path.
func (cc *CloudController) TotalRequests() int {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	n := 0
	for _, c := range cc.requests {
		n += c
	}
	return n
}

// WaitRequests returns once endpoint has received n requests, or ctx's
// error. A request is counted before any fault delays it: a test can tell
// that a delayed request has reached the fake.
func (cc *CloudController) WaitRequests(ctx context.Context, endpoint string, n int) error {
	for {
		cc.mu.Lock()
		got, counted := cc.requests[endpoint], cc.counted
		cc.mu.Unlock()
		if got >= n {
			return nil
		}
		select {
		case <-counted:
		case <-ctx.Done():
			return fmt.Errorf("%s received %d requests, not %d: %w", endpoint, got, n, ctx.Err())
		}
	}
}

// newGUID returns a random UUID and records its creation time. Callers
// hold cc.mu.
func (cc *CloudController) newGUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	g := fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
	cc.seq++
	cc.created[g] = time.Date(2025, 1, 1, 0, 0, cc.seq, 0, time.UTC)
	return g
}

// intercept counts requests and applies injected faults before the real
// handlers run.
func (cc *CloudController) intercept(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, ok := fakeserver.FaultLookup(&cc.mu, mux, r, cc.requests, cc.faults, AnyEndpoint)
		cc.mu.Lock()
		close(cc.counted)
		cc.counted = make(chan struct{})
		cc.mu.Unlock()
		if !ok {
			mux.ServeHTTP(w, r)
			return
		}
		if !fakeserver.DelayOrDrop(w, r, f.Delay, f.Drop, cc.closing) {
			return
		}
		if len(f.Warnings) > 0 {
			enc := make([]string, len(f.Warnings))
			for i, s := range f.Warnings {
				enc[i] = url.QueryEscape(s)
			}
			w.Header().Set("X-Cf-Warnings", strings.Join(enc, ","))
		}
		switch {
		case f.Status == 0:
			mux.ServeHTTP(w, r)
		case f.Body != "":
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			w.WriteHeader(f.Status)
			_, _ = w.Write([]byte(f.Body))
		case len(f.Errors) > 0:
			writeCCError(w, f.Status, f.Errors...)
		default:
			writeCCError(w, f.Status, errorForStatus(f.Status))
		}
	})
}

func errorForStatus(status int) Error {
	codes := make([]int, 0, len(knownErrors))
	for code, k := range knownErrors {
		if k.status == status {
			codes = append(codes, code)
		}
	}
	if len(codes) == 0 {
		return KnownError(10001)
	}
	return knownErrors[slices.Min(codes)].err
}

func writeCCError(w http.ResponseWriter, status int, errs ...Error) {
	fakeserver.WriteJSON(w, status, map[string][]Error{"errors": errs})
}

// caller is who a request comes from, as the Cloud Controller sees it.
type caller struct {
	guid       string // user_id, or client_id for client tokens
	globalRead bool   // admin, admin_read_only or global_auditor
}

type authedHandler func(w http.ResponseWriter, r *http.Request, c caller)

// authenticated checks the bearer token like the Cloud Controller: against
// UAA's keys, then the read scope.
func (cc *CloudController) authenticated(next authedHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		h := r.Header.Get("Authorization")
		if h == "" {
			writeCCError(w, http.StatusUnauthorized, KnownError(10002))
			return
		}
		scheme, token, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "bearer") {
			writeCCError(w, http.StatusUnauthorized, KnownError(1000))
			return
		}
		claims, err := cc.uaa.AccessClaims(strings.TrimSpace(token))
		if err != nil {
			writeCCError(w, http.StatusUnauthorized, KnownError(1000))
			return
		}
		scopes := fakeuaa.ClaimStrings(claims["scope"])
		c := caller{
			globalRead: slices.ContainsFunc(scopes, func(s string) bool {
				return s == fakeuaa.ScopeAdmin || s == fakeuaa.ScopeAdminReadOnly || s == fakeuaa.ScopeGlobalAuditor
			}),
		}
		c.guid, _ = claims["user_id"].(string)
		if c.guid == "" {
			c.guid, _ = claims["client_id"].(string)
		}
		if !c.globalRead && !slices.Contains(scopes, fakeuaa.ScopeRead) {
			writeCCError(w, http.StatusForbidden, KnownError(10007))
			return
		}
		next(w, r, c)
	}
}

// canSeeSpace: any space role there, or org manager of its org. Callers
// hold cc.mu.
func (cc *CloudController) canSeeSpace(c caller, spaceGUID string) bool {
	if c.globalRead {
		return true
	}
	org := cc.spaces[spaceGUID].OrgGUID
	return slices.ContainsFunc(cc.roles, func(r Role) bool {
		if r.UserGUID != c.guid {
			return false
		}
		if r.SpaceGUID != "" {
			return r.SpaceGUID == spaceGUID
		}
		return r.Type == RoleOrgManager && r.OrgGUID == org
	})
}

// canSeeOrg: any role in the org or in one of its spaces. Callers hold
// cc.mu.
func (cc *CloudController) canSeeOrg(c caller, orgGUID string) bool {
	if c.globalRead {
		return true
	}
	return slices.ContainsFunc(cc.roles, func(r Role) bool {
		return r.UserGUID == c.guid && (r.OrgGUID == orgGUID || (r.SpaceGUID != "" && cc.spaces[r.SpaceGUID].OrgGUID == orgGUID))
	})
}

func (cc *CloudController) serveRoot(w http.ResponseWriter, r *http.Request) {
	href := func(u string) map[string]string { return map[string]string{"href": u} }
	fakeserver.WriteJSON(w, http.StatusOK, map[string]any{
		"links": map[string]any{
			"self":                href(cc.URL),
			"bits_service":        nil,
			"cloud_controller_v2": map[string]any{"href": cc.URL + "/v2", "meta": map[string]string{"version": "2.250.0"}},
			"cloud_controller_v3": map[string]any{"href": cc.URL + "/v3", "meta": map[string]string{"version": APIVersion}},
			"network_policy_v0":   href(cc.URL + "/networking/v0/external"),
			"network_policy_v1":   href(cc.URL + "/networking/v1/external"),
			"login":               href(cc.uaa.URL),
			"uaa":                 href(cc.uaa.URL),
			"credhub":             nil,
			"routing":             href(cc.URL + "/routing"),
			"logging":             href("wss://doppler.example.com:443"),
			"log_cache":           href("https://log-cache.example.com"),
			"log_stream":          href("https://log-stream.example.com"),
			"app_ssh": map[string]any{"href": "ssh.example.com:2222", "meta": map[string]string{
				"host_key_fingerprint": "Hmm4bF9gtoGEq4HHUN5dbc8yEmfb6r7IWsNGhCFVK5w", "oauth_client": "ssh-proxy"}},
		},
	})
}

// appResource serves /v3/apps/{guid} or a path under it: the query
// checked, the app found with cc.mu held for next, and a 404 as the Cloud
// Controller answers when the app does not exist or the caller may not
// read its space.
func (cc *CloudController) appResource(allowedQuery []string, next func(w http.ResponseWriter, r *http.Request, app int)) authedHandler {
	return func(w http.ResponseWriter, r *http.Request, c caller) {
		if !checkQuery(w, r, allowedQuery...) {
			return
		}
		cc.mu.Lock()
		defer cc.mu.Unlock()
		i := slices.IndexFunc(cc.apps, func(a App) bool { return a.GUID == r.PathValue("guid") })
		if i < 0 || !cc.canSeeSpace(c, cc.apps[i].SpaceGUID) {
			writeCCError(w, http.StatusNotFound, Error{10010, "CF-ResourceNotFound", "App not found"})
			return
		}
		next(w, r, i)
	}
}

// serveApp is GET /v3/apps/{guid}. Callers hold cc.mu.
func (cc *CloudController) serveApp(w http.ResponseWriter, r *http.Request, i int) {
	body := cc.appJSON(cc.apps[i])
	if included := cc.includeSpaces(r, cc.apps[i:i+1]); included != nil {
		body["included"] = included
	}
	fakeserver.WriteJSON(w, http.StatusOK, body)
}

func (cc *CloudController) serveApps(w http.ResponseWriter, r *http.Request, c caller) {
	if !checkQuery(w, r, "names", "guids", "space_guids", "organization_guids", "include", "page", "per_page", "order_by") {
		return
	}
	q := r.URL.Query()
	cc.mu.Lock()
	defer cc.mu.Unlock()
	var matched []App
	for _, a := range cc.apps {
		if cc.canSeeSpace(c, a.SpaceGUID) &&
			filterMatches(q, "names", a.Name) &&
			filterMatches(q, "guids", a.GUID) &&
			filterMatches(q, "space_guids", a.SpaceGUID) &&
			filterMatches(q, "organization_guids", cc.spaces[a.SpaceGUID].OrgGUID) {
			matched = append(matched, a)
		}
	}
	paginate(cc, w, r, matched, func(page []App) map[string]any {
		out := map[string]any{}
		if included := cc.includeSpaces(r, page); included != nil {
			out["included"] = included
		}
		res := make([]any, len(page))
		for i, a := range page {
			res[i] = cc.appJSON(a)
		}
		out["resources"] = res
		return out
	})
}

// serveOrgs lists the orgs the caller may see, as `cf target -o ORG`
// asks: names, page and per_page.
func (cc *CloudController) serveOrgs(w http.ResponseWriter, r *http.Request, c caller) {
	if !checkQuery(w, r, "names", "guids", "page", "per_page", "order_by") {
		return
	}
	q := r.URL.Query()
	cc.mu.Lock()
	defer cc.mu.Unlock()
	var matched []Org
	for _, o := range cc.orgs {
		if cc.canSeeOrg(c, o.GUID) && filterMatches(q, "names", o.Name) && filterMatches(q, "guids", o.GUID) {
			matched = append(matched, o)
		}
	}
	paginateByAge(cc, w, r, matched, func(o Org) string { return o.GUID }, cc.orgJSON)
}

// serveSpaces lists the spaces the caller may see, as `cf target -s SPACE`
// asks: names, organization_guids, page and per_page.
func (cc *CloudController) serveSpaces(w http.ResponseWriter, r *http.Request, c caller) {
	if !checkQuery(w, r, "names", "guids", "organization_guids", "page", "per_page", "order_by", "include") {
		return
	}
	q := r.URL.Query()
	cc.mu.Lock()
	defer cc.mu.Unlock()
	var matched []Space
	for _, s := range cc.spaces {
		if cc.canSeeSpace(c, s.GUID) && filterMatches(q, "names", s.Name) && filterMatches(q, "guids", s.GUID) &&
			filterMatches(q, "organization_guids", s.OrgGUID) {
			matched = append(matched, s)
		}
	}
	paginateByAge(cc, w, r, matched, func(s Space) string { return s.GUID }, cc.spaceJSON)
}

// paginateByAge writes a page of resources kept in a map, in creation
// order as the Cloud Controller lists them by default. Callers hold cc.mu.
func paginateByAge[T any](cc *CloudController, w http.ResponseWriter, r *http.Request, items []T, guid func(T) string, render func(T) map[string]any) {
	slices.SortFunc(items, func(a, b T) int { return cc.created[guid(a)].Compare(cc.created[guid(b)]) })
	paginate(cc, w, r, items, func(page []T) map[string]any {
		res := make([]any, len(page))
		for i, item := range page {
			res[i] = render(item)
		}
		return map[string]any{"resources": res}
	})
}

func (cc *CloudController) serveRoles(w http.ResponseWriter, r *http.Request, c caller) {
	if !checkQuery(w, r, "guids", "types", "space_guids", "organization_guids", "user_guids", "page", "per_page", "order_by") {
		return
	}
	q := r.URL.Query()
	cc.mu.Lock()
	defer cc.mu.Unlock()
	var matched []Role
	for _, role := range cc.roles {
		visible := cc.canSeeOrg(c, role.OrgGUID)
		if role.SpaceGUID != "" {
			visible = cc.canSeeSpace(c, role.SpaceGUID)
		}
		if visible &&
			filterMatches(q, "guids", role.GUID) &&
			filterMatches(q, "types", role.Type) &&
			filterMatches(q, "space_guids", role.SpaceGUID) &&
			filterMatches(q, "organization_guids", role.OrgGUID) &&
			filterMatches(q, "user_guids", role.UserGUID) {
			matched = append(matched, role)
		}
	}
	paginate(cc, w, r, matched, func(page []Role) map[string]any {
		res := make([]any, len(page))
		for i, role := range page {
			res[i] = cc.roleJSON(role)
		}
		return map[string]any{"resources": res}
	})
}

// serveProcessStats is GET /v3/apps/{guid}/processes/{type}/stats.
// Callers hold cc.mu.
func (cc *CloudController) serveProcessStats(w http.ResponseWriter, r *http.Request, i int) {
	instances, ok := cc.processes[cc.apps[i].GUID][r.PathValue("type")]
	if !ok {
		writeCCError(w, http.StatusNotFound, Error{10010, "CF-ResourceNotFound", "Process not found"})
		return
	}
	instances = slices.SortedFunc(slices.Values(instances), func(a, b ProcessInstance) int { return cmp.Compare(a.Index, b.Index) })
	res := make([]any, 0, len(instances))
	for _, in := range instances {
		res = append(res, statsJSON(r.PathValue("type"), in))
	}
	fakeserver.WriteJSON(w, http.StatusOK, map[string]any{"resources": res})
}

// serveSSHEnabled follows the Cloud Controller's ssh_enabled action: an
// app the caller may read (any space role, org manager, global read) gets
// the three switches combined, and the reason names the first that is
// off, in the order and words of app_ssh_status_presenter.rb. Callers
// hold cc.mu.
func (cc *CloudController) serveSSHEnabled(w http.ResponseWriter, r *http.Request, i int) {
	app, space := cc.apps[i], cc.spaces[cc.apps[i].SpaceGUID]
	reason := ""
	switch {
	case cc.sshOff:
		reason = "ssh is disabled globally"
	case !space.AllowSSH:
		reason = fmt.Sprintf("ssh is disabled for space '%s'", space.Name)
	case !app.EnableSSH:
		reason = "ssh is disabled for app"
	}
	fakeserver.WriteJSON(w, http.StatusOK, map[string]any{"enabled": reason == "", "reason": reason})
}

// statsJSON follows process_stats_presenter.rb: DOWN instances carry no
// host, ports, usage or quotas.
func statsJSON(processType string, in ProcessInstance) map[string]any {
	var details any
	if in.Details != "" {
		details = in.Details
	}
	m := map[string]any{
		"type":              processType,
		"index":             in.Index,
		"state":             in.State,
		"uptime":            in.Uptime,
		"isolation_segment": nil,
		"details":           details,
		"routable":          in.State == StateRunning,
	}
	if in.State == StateDown {
		return m
	}
	m["host"] = in.Host
	m["instance_internal_ip"] = in.InternalIP
	m["mem_quota"] = 268435456
	m["disk_quota"] = 1073741824
	m["log_rate_limit"] = 16384
	m["fds_quota"] = 16384
	m["usage"] = map[string]any{
		"time": "2025-01-01T00:00:00+00:00", "cpu": 0.0031, "cpu_entitlement": 0.02,
		"mem": 52428800, "disk": 10485760, "log_rate": 0,
	}
	ports := []any{}
	if in.Host != "" {
		ports = append(ports, map[string]int{
			"external": 61000 + in.Index, "internal": 8080,
			"external_tls_proxy_port": 61100 + in.Index, "internal_tls_proxy_port": 61001,
		})
	}
	m["instance_ports"] = ports
	if in.InstanceGUID != "" {
		m["instance_guid"] = in.InstanceGUID
	}
	return m
}

// appJSON is the v3 app resource. Callers hold cc.mu.
func (cc *CloudController) appJSON(a App) map[string]any {
	ts := cc.created[a.GUID].Format(time.RFC3339)
	self := cc.URL + "/v3/apps/" + a.GUID
	return map[string]any{
		"guid":       a.GUID,
		"created_at": ts,
		"updated_at": ts,
		"name":       a.Name,
		"state":      a.State,
		"lifecycle": map[string]any{"type": "buildpack", "data": map[string]any{
			"buildpacks": []string{}, "stack": "cflinuxfs4"}},
		"relationships": map[string]any{"space": map[string]any{"data": map[string]string{"guid": a.SpaceGUID}}},
		"metadata":      map[string]any{"labels": map[string]string{}, "annotations": map[string]string{}},
		"links": map[string]any{
			"self":      map[string]string{"href": self},
			"space":     map[string]string{"href": cc.URL + "/v3/spaces/" + a.SpaceGUID},
			"processes": map[string]string{"href": self + "/processes"},
		},
	}
}

// includeSpaces answers include=space. Callers hold cc.mu.
func (cc *CloudController) includeSpaces(r *http.Request, apps []App) map[string]any {
	if !slices.Contains(strings.Split(r.URL.Query().Get("include"), ","), "space") {
		return nil
	}
	spaces := []any{}
	var seen []string
	for _, a := range apps {
		s, ok := cc.spaces[a.SpaceGUID]
		if !ok || slices.Contains(seen, s.GUID) {
			continue
		}
		seen = append(seen, s.GUID)
		spaces = append(spaces, cc.spaceJSON(s))
	}
	return map[string]any{"spaces": spaces}
}

// spaceJSON is the v3 space resource. Callers hold cc.mu.
func (cc *CloudController) spaceJSON(s Space) map[string]any {
	ts := cc.created[s.GUID].Format(time.RFC3339)
	return map[string]any{
		"guid": s.GUID, "created_at": ts, "updated_at": ts, "name": s.Name,
		"relationships": map[string]any{
			"organization": map[string]any{"data": map[string]string{"guid": s.OrgGUID}},
			"quota":        map[string]any{"data": nil},
		},
		"metadata": map[string]any{"labels": map[string]string{}, "annotations": map[string]string{}},
		"links": map[string]any{
			"self":         map[string]string{"href": cc.URL + "/v3/spaces/" + s.GUID},
			"organization": map[string]string{"href": cc.URL + "/v3/organizations/" + s.OrgGUID},
			"features":     map[string]string{"href": cc.URL + "/v3/spaces/" + s.GUID + "/features"},
			"apply_manifest": map[string]any{
				"href": cc.URL + "/v3/spaces/" + s.GUID + "/actions/apply_manifest", "method": "POST"},
		},
	}
}

// orgJSON is the v3 organization resource. Callers hold cc.mu.
func (cc *CloudController) orgJSON(o Org) map[string]any {
	ts := cc.created[o.GUID].Format(time.RFC3339)
	self := cc.URL + "/v3/organizations/" + o.GUID
	return map[string]any{
		"guid": o.GUID, "created_at": ts, "updated_at": ts, "name": o.Name, "suspended": false,
		"relationships": map[string]any{"quota": map[string]any{"data": map[string]string{"guid": "default-quota"}}},
		"metadata":      map[string]any{"labels": map[string]string{}, "annotations": map[string]string{}},
		"links": map[string]any{
			"self":           map[string]string{"href": self},
			"domains":        map[string]string{"href": self + "/domains"},
			"default_domain": map[string]string{"href": self + "/domains/default"},
			"quota":          map[string]string{"href": cc.URL + "/v3/organization_quotas/default-quota"},
		},
	}
}

// roleJSON is the v3 role resource. Callers hold cc.mu.
func (cc *CloudController) roleJSON(role Role) map[string]any {
	ts := cc.created[role.GUID].Format(time.RFC3339)
	rel := func(guid string) map[string]any {
		if guid == "" {
			return map[string]any{"data": nil}
		}
		return map[string]any{"data": map[string]string{"guid": guid}}
	}
	links := map[string]any{
		"self": map[string]string{"href": cc.URL + "/v3/roles/" + role.GUID},
		"user": map[string]string{"href": cc.URL + "/v3/users/" + role.UserGUID},
	}
	if role.SpaceGUID != "" {
		links["space"] = map[string]string{"href": cc.URL + "/v3/spaces/" + role.SpaceGUID}
	} else {
		links["organization"] = map[string]string{"href": cc.URL + "/v3/organizations/" + role.OrgGUID}
	}
	return map[string]any{
		"guid": role.GUID, "created_at": ts, "updated_at": ts, "type": role.Type,
		"relationships": map[string]any{
			"user":         rel(role.UserGUID),
			"space":        rel(role.SpaceGUID),
			"organization": rel(role.OrgGUID),
		},
		"links": links,
	}
}

// checkQuery refuses unknown query parameters as the Cloud Controller does,
// so a client that misspells a filter fails instead of seeing everything.
func checkQuery(w http.ResponseWriter, r *http.Request, allowed ...string) bool {
	var unknown []string
	for k := range r.URL.Query() {
		if !slices.Contains(allowed, k) {
			unknown = append(unknown, "'"+k+"'")
		}
	}
	if len(unknown) == 0 {
		return true
	}
	slices.Sort(unknown)
	e := KnownError(10005)
	e.Detail = fmt.Sprintf("The query parameter is invalid: Unknown query parameter(s): %s. Valid parameters are: '%s'",
		strings.Join(unknown, ", "), strings.Join(allowed, "', '"))
	writeCCError(w, http.StatusBadRequest, e)
	return false
}

// filterMatches: an absent filter matches everything; a present one is a
// comma-separated list of exact values.
func filterMatches(q url.Values, name, value string) bool {
	if !q.Has(name) {
		return true
	}
	return slices.Contains(strings.Split(q.Get(name), ","), value)
}

// paginate writes one page of items with the Cloud Controller's
// pagination object (absolute links that keep the filters). Callers hold
// cc.mu.
func paginate[T any](cc *CloudController, w http.ResponseWriter, r *http.Request, items []T, render func([]T) map[string]any) {
	q := r.URL.Query()
	perPage, page := 50, 1
	if v := q.Get("per_page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 5000 {
			e := KnownError(10005)
			e.Detail = "The query parameter is invalid: Per page must be between 1 and 5000"
			writeCCError(w, http.StatusBadRequest, e)
			return
		}
		perPage = n
	}
	if v := q.Get("page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			e := KnownError(10005)
			e.Detail = "The query parameter is invalid: Page must be greater than 0"
			writeCCError(w, http.StatusBadRequest, e)
			return
		}
		page = n
	}
	lastPage := max(1, (len(items)+perPage-1)/perPage)
	link := func(p int) map[string]string {
		lq := url.Values{}
		for k, v := range q {
			lq[k] = v
		}
		lq.Set("page", strconv.Itoa(p))
		lq.Set("per_page", strconv.Itoa(perPage))
		return map[string]string{"href": cc.URL + r.URL.Path + "?" + lq.Encode()}
	}
	var next, previous any
	if page < lastPage {
		next = link(page + 1)
	}
	if page > 1 {
		previous = link(page - 1)
	}
	start := min(len(items), (page-1)*perPage)
	end := min(len(items), start+perPage)
	body := render(items[start:end])
	body["pagination"] = map[string]any{
		"total_results": len(items),
		"total_pages":   lastPage,
		"first":         link(1),
		"last":          link(lastPage),
		"next":          next,
		"previous":      previous,
	}
	fakeserver.WriteJSON(w, http.StatusOK, body)
}
