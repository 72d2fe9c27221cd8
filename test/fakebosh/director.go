// Package fakebosh is a fake BOSH director: a real HTTPS server on loopback
// with a small in-memory model of deployments (their teams) and instances
// (their VMs and IPs), answering /info, /deployments and
// /deployments/{deployment}/instances with the director's JSON, checking
// tokens minted by a fakeuaa.UAA made with fakeuaa.DirectorUAA as the
// director does (signature, expiry, no refresh token; no audience), and
// refusing as the director refuses: a missing or bad token with its
// plain-text 401, a scope that does not cover a deployment with a 401
// whose body is {"code":600000,"description":"Require one of the scopes:
// ..."}, an unknown deployment with a 404 of code 70000.
package fakebosh

import (
	"crypto/rand"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudfoundry/pcap-server-release/test/fakeserver"
	"github.com/cloudfoundry/pcap-server-release/test/fakeuaa"
)

// Director endpoints, as counted by (*Director).Requests and as keys for
// (*Director).Inject.
const (
	GetInfo         = "GET /info"
	ListDeployments = "GET /deployments"
	ListInstances   = "GET /deployments/{deployment}/instances"
	// AnyEndpoint as an Inject key applies to every request.
	AnyEndpoint = ""
)

// Director error codes (bosh-director's errors.rb).
const (
	CodeDeploymentNotFound = 70000
	CodeUnauthorized       = 600000
)

// Deployment is a deployment and the teams it belongs to.
type Deployment struct {
	Name  string
	Teams []string
}

// Instance is an instance of a deployment's instance group. A VM-less
// instance (stopped with --hard, or an errand's) has no CID, agent id or
// IPs.
type Instance struct {
	Group string
	Index int
	ID    string
	AZ    string
	IPs   []string
	CID   string
	// AgentID is the BOSH agent's id on the VM (not pcap-server's).
	AgentID     string
	ExpectsVM   bool
	VMCreatedAt time.Time
}

// Fault changes how the fake answers an endpoint.
type Fault struct {
	// Delay holds the answer back; it ends early when the client goes away
	// or the server closes.
	Delay time.Duration
	// Drop closes the connection without an answer.
	Drop bool
	// Status and Body, when Status is set, replace the real answer.
	Status int
	Body   string
}

// Director is a fake BOSH director.
type Director struct {
	// URL is the base URL, like https://DIRECTOR:25555.
	URL string
	// UUID is the director's uuid, as in bosh.<uuid>.admin.
	UUID string
	Name string
	// CA signed the server certificate: the director UAA's CA, as the
	// director and its UAA share one certificate authority (director_ssl)
	// in bosh-deployment, and the bosh CLI trusts one ca_cert for both.
	CA *fakeserver.CA

	uaa     *fakeuaa.UAA
	srv     *httptest.Server
	closing chan struct{}
	once    sync.Once

	// Endpoints gives Inject, Clear, Requests and TotalRequests, by
	// endpoint (GetInfo, ...; AnyEndpoint for Inject).
	fakeserver.Endpoints[Fault]

	mu          sync.Mutex
	deployments []Deployment
	instances   map[string][]Instance
}

// Option changes the fake at New.
type Option func(*settings)

type settings struct{ listener net.Listener }

// ServeOn serves on l (for example a listener opened in another network
// namespace) instead of a new loopback port. Its address must be
// 127.0.0.1, which the certificate names.
func ServeOn(l net.Listener) Option { return func(s *settings) { s.listener = l } }

// New starts a fake director whose users log in at uaa (made with
// fakeuaa.DirectorUAA). It stops when the test ends.
func New(tb testing.TB, uaa *fakeuaa.UAA, opts ...Option) *Director {
	tb.Helper()
	var set settings
	for _, o := range opts {
		o(&set)
	}
	tlsCfg, err := uaa.CA.ServerTLS("director")
	if err != nil {
		tb.Fatalf("fake director: %v", err)
	}
	d := &Director{
		UUID:      newUUID(),
		Name:      "fake-director",
		CA:        uaa.CA,
		uaa:       uaa,
		closing:   make(chan struct{}),
		instances: map[string][]Instance{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc(GetInfo, d.serveInfo)
	mux.HandleFunc(ListDeployments, d.authenticated(d.serveDeployments))
	mux.HandleFunc(ListInstances, d.authenticated(d.serveInstances))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "<h1>Not Found</h1>", http.StatusNotFound)
	})
	d.srv = fakeserver.StartTLS(d.intercept(mux), tlsCfg, set.listener)
	d.URL = d.srv.URL
	tb.Cleanup(d.Close)
	return d
}

// Close stops the server, ending delayed answers first.
func (d *Director) Close() {
	d.once.Do(func() { close(d.closing) })
	d.srv.Close()
}

// Client is an HTTP client that trusts the director's CA only.
func (d *Director) Client() *http.Client { return d.CA.Client() }

// AddDeployment adds a deployment with its instances, replacing one of the
// same name.
func (d *Director) AddDeployment(dep Deployment, instances ...Instance) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.deployments = slices.DeleteFunc(d.deployments, func(x Deployment) bool { return x.Name == dep.Name })
	d.deployments = append(d.deployments, dep)
	slices.SortFunc(d.deployments, func(a, b Deployment) int { return strings.Compare(a.Name, b.Name) })
	d.instances[dep.Name] = slices.Clone(instances)
}

// NewVM is an instance with a running VM: a fresh id, CID and agent id,
// expecting its VM.
func NewVM(group string, index int, az string, ips ...string) Instance {
	return Instance{Group: group, Index: index, ID: newUUID(), AZ: az, IPs: ips,
		CID: "vm-" + newUUID(), AgentID: newUUID(), ExpectsVM: true, VMCreatedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (d *Director) intercept(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, ok := d.Lookup(mux, r, AnyEndpoint)
		if !ok {
			mux.ServeHTTP(w, r)
			return
		}
		if !fakeserver.DelayOrDrop(w, r, f.Delay, f.Drop, d.closing) {
			return
		}
		if f.Status == 0 {
			mux.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(f.Status)
		_, _ = w.Write([]byte(f.Body))
	})
}

// serveInfo is GET /info, which needs no token: the director's name, uuid
// and version, and where its users authenticate.
func (d *Director) serveInfo(w http.ResponseWriter, r *http.Request) {
	fakeserver.WriteJSON(w, http.StatusOK, map[string]any{
		"name":             d.Name,
		"uuid":             d.UUID,
		"version":          "282.0.4 (00000000)",
		"user":             nil,
		"cpi":              "warden_cpi",
		"stemcell_os":      "ubuntu-noble",
		"stemcell_version": "1.425",
		"user_authentication": map[string]any{
			"type":    "uaa",
			"options": map[string]any{"url": d.uaa.URL, "urls": []string{d.uaa.URL}},
		},
		"features": map[string]any{
			"local_dns":              map[string]any{"status": true, "extras": map[string]any{"domain_name": "bosh"}},
			"power_dns":              map[string]any{"status": false, "extras": map[string]any{"domain_name": "bosh"}},
			"compiled_package_cache": map[string]any{"status": false, "extras": map[string]any{"provider": nil}},
			"snapshots":              map[string]any{"status": false},
			"config_server":          map[string]any{"status": true, "extras": map[string]any{"urls": []string{"https://127.0.0.1:8844/api/"}}},
		},
	})
}

// scopes are a caller's, as the director reads them from its token.
type scopes []string

func (s scopes) has(want ...string) bool {
	return slices.ContainsFunc(want, func(w string) bool { return slices.Contains(s, w) })
}

type authedHandler func(w http.ResponseWriter, r *http.Request, s scopes)

// authenticated checks the token as the director does: a request without
// a valid one is "Not authorized", in plain text, whatever it asked.
func (d *Director) authenticated(next authedHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		var claims map[string]any
		err := fmt.Errorf("no bearer token")
		if strings.EqualFold(scheme, "bearer") {
			claims, err = d.uaa.AccessClaims(strings.TrimSpace(token))
		}
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Basic realm="BOSH Director"`)
			w.Header().Set("Content-Type", "text/html;charset=utf-8")
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprintf(w, "Not authorized: '%s'\n", r.URL.Path)
			return
		}
		next(w, r, fakeuaa.ClaimStrings(claims["scope"]))
	}
}

// admin and read are the director-wide scopes.
func (d *Director) admin() []string {
	return []string{fakeuaa.ScopeBoshAdmin, fakeuaa.BoshDirectorAdmin(d.UUID)}
}
func (d *Director) read() []string {
	return []string{fakeuaa.ScopeBoshRead, fakeuaa.BoshDirectorRead(d.UUID)}
}

// readScopes are those that may read a deployment: the director's admin
// and read scopes and its teams' admin and read scopes, in the order the
// director lists them.
func (d *Director) readScopes(dep Deployment) []string {
	want := d.admin()
	for _, t := range dep.Teams {
		want = append(want, fakeuaa.BoshTeamAdmin(t))
	}
	for _, t := range dep.Teams {
		want = append(want, fakeuaa.BoshTeamRead(t))
	}
	return append(want, d.read()...)
}

// serveDeployments is GET /deployments: the deployments the caller may
// read, with their teams. Listing needs a director read or admin scope,
// or the admin scope of some team.
func (d *Director) serveDeployments(w http.ResponseWriter, r *http.Request, s scopes) {
	teamAdmin := slices.ContainsFunc(s, func(sc string) bool {
		return strings.HasPrefix(sc, "bosh.teams.") && strings.HasSuffix(sc, ".admin")
	})
	if !s.has(d.admin()...) && !s.has(d.read()...) && !teamAdmin {
		writeError(w, http.StatusUnauthorized, CodeUnauthorized, "Require one of the scopes: "+strings.Join(append(d.admin(), d.read()...), ", "))
		return
	}
	d.mu.Lock()
	deps := slices.Clone(d.deployments)
	d.mu.Unlock()
	out := []map[string]any{}
	for _, dep := range deps {
		if !s.has(d.readScopes(dep)...) {
			continue
		}
		teams := dep.Teams
		if teams == nil {
			teams = []string{}
		}
		out = append(out, map[string]any{
			"name":         dep.Name,
			"releases":     []map[string]string{{"name": "pcap-server", "version": "1.0.0"}},
			"stemcells":    []map[string]string{{"name": "bosh-warden-boshlite-ubuntu-noble", "version": "1.425"}},
			"cloud_config": "latest",
			"teams":        teams,
		})
	}
	fakeserver.WriteJSON(w, http.StatusOK, out)
}

// serveInstances is GET /deployments/{deployment}/instances: the
// deployment is looked up first (a 404 for any caller), then the caller
// must be able to read it.
func (d *Director) serveInstances(w http.ResponseWriter, r *http.Request, s scopes) {
	name := r.PathValue("deployment")
	d.mu.Lock()
	i := slices.IndexFunc(d.deployments, func(x Deployment) bool { return x.Name == name })
	var dep Deployment
	var instances []Instance
	if i >= 0 {
		dep, instances = d.deployments[i], slices.Clone(d.instances[name])
	}
	d.mu.Unlock()
	if i < 0 {
		writeError(w, http.StatusNotFound, CodeDeploymentNotFound, fmt.Sprintf("Deployment '%s' doesn't exist", name))
		return
	}
	if want := d.readScopes(dep); !s.has(want...) {
		writeError(w, http.StatusUnauthorized, CodeUnauthorized, "Require one of the scopes: "+strings.Join(want, ", "))
		return
	}
	out := []map[string]any{}
	for _, in := range instances {
		e := map[string]any{
			"agent_id":      nil,
			"cid":           nil,
			"job":           in.Group,
			"index":         in.Index,
			"id":            in.ID,
			"az":            nil,
			"ips":           []string{},
			"vm_created_at": nil,
			"expects_vm":    in.ExpectsVM,
		}
		if in.AZ != "" {
			e["az"] = in.AZ
		}
		if in.CID != "" {
			e["agent_id"], e["cid"], e["vm_created_at"] = in.AgentID, in.CID, in.VMCreatedAt.UTC().Format(time.RFC3339)
			if in.IPs != nil {
				e["ips"] = in.IPs
			}
		}
		out = append(out, e)
	}
	fakeserver.WriteJSON(w, http.StatusOK, out)
}

// writeError answers as the director's error handler does.
func writeError(w http.ResponseWriter, status, code int, description string) {
	fakeserver.WriteJSON(w, status, map[string]any{"code": code, "description": description})
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}
