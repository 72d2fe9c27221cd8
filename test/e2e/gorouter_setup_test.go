package e2e

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/cloudfoundry/pcap-server-release/proxy/apiconfig"
	"github.com/cloudfoundry/pcap-server-release/test/boshrelease"
	"github.com/cloudfoundry/pcap-server-release/test/netnstest"
	"github.com/cloudfoundry/pcap-server-release/test/realcf"
	"github.com/cloudfoundry/pcap-server-release/test/testpki"
)

// The system domain of the gorouter tier, and the API's two names on it.
const (
	sysDomain = "sys.realcf.test"
	tlsHost   = "pcap." + sysDomain       // the route manifests/pcap-server.yml registers
	plainHost = "pcap-plain." + sysDomain // a port route to an API without listen.tls
)

// routed is the API behind the real gorouter: the binary twice, once with
// listen.tls behind the route the deployment manifest registers (tls_port,
// server_cert_domain_san, protocol http2) and once plain behind a port
// route; one agent holds a session to each; one app instance.
type routed struct {
	bins     *realcf.Binaries
	p        *pki
	app      *app
	listenCA *testpki.CA
	tlsAPI   *apiBin
	plainAPI *apiBin
	routes   []map[string]any
	router   *realcf.Router // the default gorouter, once started
}

func newRouted(t *testing.T, mutate func(*apiconfig.Config)) *routed {
	t.Helper()
	bins := realcf.Require(t, "gorouter")
	netnstest.RequireRoot(t)
	f := &routed{bins: bins, p: newPKI(t), app: newApp(t)}
	var err error
	if f.listenCA, err = testpki.NewCA("pcap api listen CA"); err != nil {
		t.Fatal(err)
	}
	// RSA: the gorouter offers only ECDHE-RSA suites to its backends too.
	leaf, err := f.listenCA.ServerRSA(tlsHost)
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := leaf.WriteFiles(t.TempDir(), "listen")
	if err != nil {
		t.Fatal(err)
	}
	configure := func(id string, tls bool) func(*apiconfig.Config) {
		return func(c *apiconfig.Config) {
			c.ID = id
			if tls {
				c.Listen.TLS = &apiconfig.ServerTLS{Certificate: cert, PrivateKey: key}
			}
			if mutate != nil {
				mutate(c)
			}
		}
	}
	targets := oneInstance("127.0.0.1")
	f.tlsAPI = startAPIBinary(t, f.p, targets, configure("pcap-server-api/tls", true))
	f.plainAPI = startAPIBinary(t, f.p, targets, configure("pcap-server-api/plain", false))
	cfg := agentConfig(f.p, &apiProc{}, "127.0.0.1", map[string]string{appGUID + "/0": f.app.pair.App.Path()})
	cfg.API.Addresses = []string{f.tlsAPI.tunnel, f.plainAPI.tunnel}
	cfg.Limits.MaxCaptures = 16
	runAgent(t, cfg)
	f.tlsAPI.waitAgent(t, f.direct(false), "127.0.0.1")
	f.plainAPI.waitAgent(t, f.direct(false), "127.0.0.1")
	f.routes = jobRoutes(t, f, leaf)
	return f
}

// startRouter starts a gorouter with both routes; the first one started
// is f.router.
func (f *routed) startRouter(t *testing.T, opts realcf.RouterOptions) *realcf.Router {
	t.Helper()
	opts.Domain, opts.BackendCA, opts.Routes = sysDomain, f.listenCA.CertPEM, f.routes
	r := realcf.StartRouter(t, f.bins, opts)
	if f.router == nil {
		f.router = r
	}
	return r
}

// direct is a client of the APIs' own listeners (it verifies the TLS
// API's certificate).
func (f *routed) direct(http2 bool) *http.Client {
	return &http.Client{Transport: directTransport(f.listenCA.CertPEM, tlsHost, http2)}
}

// quietWay is one way to the API for a quiet capture.
type quietWay struct {
	name   string
	client *http.Client
	base   string
	format string
}

// quietWays are the ways a quiet capture must end well: through the
// gorouter on both routes, over HTTP/2 and HTTP/1.1, in pcap and pcapng,
// and direct to both APIs.
func (f *routed) quietWays() []quietWay {
	r := f.router
	via := func(http2 bool) *http.Client { return &http.Client{Transport: r.Transport(http2)} }
	return []quietWay{
		{"gorouter TLS route HTTP/2", via(true), r.URL(tlsHost, true), "pcap"},
		{"gorouter TLS route HTTP/2 pcapng", via(true), r.URL(tlsHost, true), "pcapng"},
		{"gorouter TLS route HTTP/1.1", via(false), r.URL(tlsHost, true), "pcap"},
		{"gorouter port route HTTP/1.1", via(false), r.URL(plainHost, false), "pcap"},
		{"direct HTTPS HTTP/2", f.direct(true), f.tlsAPI.url, "pcap"},
		{"direct HTTPS HTTP/1.1", f.direct(false), f.tlsAPI.url, "pcap"},
		{"direct HTTP/1.1", f.direct(false), f.plainAPI.url, "pcap"},
	}
}

// quietCaptures captures, for d, what matches no packet, every quiet way
// at once (whatever go test's -parallel), and checks that each capture
// ends at its duration with its trailers, and in pcapng with at least
// minISBs interface statistics blocks. All are started before any is
// read: they run together, and each is read to its end in turn.
func (f *routed) quietCaptures(t *testing.T, d time.Duration, minISBs int) {
	t.Helper()
	ways := f.quietWays()
	resps := make([]*http.Response, len(ways))
	start := time.Now()
	for i, w := range ways {
		resps[i] = captureVia(t, w.client, w.base, url.Values{"filter": {"udp port 1"}, "duration": {d.String()}, "format": {w.format}})
		if resps[i].StatusCode != http.StatusOK {
			t.Fatalf("%s: status %d: %s", w.name, resps[i].StatusCode, finish(t, resps[i]).body)
		}
	}
	for i, w := range ways {
		res := finishWithin(t, resps[i], d+time.Minute)
		took := time.Since(start).Round(time.Second)
		if tr := res.trailer; tr.Get("Pcap-End-Reason") != "duration" || tr.Get("Pcap-Packets") != "0" {
			t.Errorf("%s: after %s of silence over %s: trailers %v", w.name, took, resps[i].Proto, tr)
			continue
		}
		if n := countISBs(res.body); w.format == "pcapng" && n < minISBs {
			t.Errorf("%s: %d interface statistics blocks in %s of silence", w.name, n, d)
		}
		tshark(t, res.file, "frame.number")
		t.Logf("%s: ended by %s with trailers %v", w.name, took, res.trailer)
	}
}

// captureVia asks base (a URL up to the host) for a capture of the app,
// as the client at 198.18.0.9 behind whatever forwards it.
func captureVia(t *testing.T, client *http.Client, base string, q url.Values) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+"/v1/apps/"+appGUID+"/capture?"+q.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "bearer "+devToken)
	req.Header.Set("X-Forwarded-For", clientXFF)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// clientXFF is what the clients claim to be in X-Forwarded-For.
const clientXFF = "198.18.0.9"

// stopVia sends the graceful stop of a capture to base.
func stopVia(t *testing.T, client *http.Client, base, captureID string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodDelete, base+"/v1/apps/"+appGUID+"/capture/"+captureID, nil)
	req.Header.Set("Authorization", "bearer "+devToken)
	req.Header.Set("X-Forwarded-For", clientXFF)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// jobRoutes are the routes route-registrar gets: the one
// manifests/pcap-server.yml gives it for the API, with this deployment's
// values in place of its variables, after checking it against what the
// pcap-server-api job renders from the same manifest (the port is the
// job's listen port, served with TLS; the health check is the job's
// script); and the same route as a port route to the plain API.
func jobRoutes(t *testing.T, f *routed, leaf *testpki.Leaf) []map[string]any {
	t.Helper()
	read := func(path string) string {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	vars := map[string]string{
		"system_domain":                   sysDomain,
		"cf_api_ca":                       string(f.listenCA.CertPEM),
		"pcap_api_listen_tls.certificate": string(leaf.CertPEM),
		"pcap_api_listen_tls.private_key": string(leaf.KeyPEM),
		"pcap_api_tunnel_tls.certificate": read(f.p.apiCert),
		"pcap_api_tunnel_tls.private_key": read(f.p.apiKey),
		"pcap_api_tunnel_tls.ca":          read(f.p.ca),
	}
	apiProps, route := manifestAPIJobs(t, vars)

	// What the manifest's properties make of the job: the route's port
	// must be its listen port, with TLS.
	dir := renderAPIJob(t, apiProps)
	var rendered apiconfig.Config
	if err := yaml.Unmarshal([]byte(read(filepath.Join(dir, "config", "pcap-server-api.yml"))), &rendered); err != nil {
		t.Fatal(err)
	}
	_, listenPort, _ := net.SplitHostPort(rendered.Listen.Address)
	if fmt.Sprint(route["tls_port"]) != listenPort || rendered.Listen.TLS == nil || route["port"] != nil {
		t.Fatalf("the manifest's route (tls_port %v, port %v) does not reach the job's listen address %s (TLS %v)",
			route["tls_port"], route["port"], rendered.Listen.Address, rendered.Listen.TLS != nil)
	}
	hc := route["health_check"].(map[string]any)
	if hc["script_path"] != "/var/vcap/jobs/pcap-server-api/bin/route_health_check" {
		t.Fatalf("the route's health check %v is not the job's bin/route_health_check", hc["script_path"])
	}
	if route["protocol"] != "http2" || route["server_cert_domain_san"] != tlsHost || fmt.Sprint(route["uris"]) != "["+tlsHost+"]" {
		t.Fatalf("the manifest's route changed: %v", route)
	}

	// The job's health check script, rendered for each API's address.
	healthCheck := func(api *apiBin, tls bool) string {
		props := maps.Clone(apiProps)
		listen := map[string]any{"address": "127.0.0.1:" + strconv.Itoa(api.port(t))}
		if tls {
			listen["tls"] = apiProps["listen"].(map[string]any)["tls"]
		}
		props["listen"] = listen
		return filepath.Join(renderAPIJob(t, props), "bin", "route_health_check")
	}
	tlsRoute := deepCopy(route)
	tlsRoute["tls_port"] = f.tlsAPI.port(t)
	tlsRoute["health_check"].(map[string]any)["script_path"] = healthCheck(f.tlsAPI, true)

	plain := deepCopy(route)
	delete(plain, "tls_port")
	delete(plain, "server_cert_domain_san")
	delete(plain, "protocol")
	plain["name"] = fmt.Sprint(route["name"]) + "-plain"
	plain["uris"] = []any{plainHost}
	plain["port"] = f.plainAPI.port(t)
	plain["health_check"].(map[string]any)["name"] = fmt.Sprint(hc["name"]) + "-plain"
	plain["health_check"].(map[string]any)["script_path"] = healthCheck(f.plainAPI, false)
	return []map[string]any{tlsRoute, plain}
}

// manifestAPIJobs reads the pcap-server-api instance group of
// manifests/pcap-server.yml: the properties of its pcap-server-api job
// and the route its route_registrar registers, with vars filled in.
func manifestAPIJobs(t *testing.T, vars map[string]string) (apiProps, route map[string]any) {
	t.Helper()
	doc, err := boshrelease.LoadYAML("../../manifests/pcap-server.yml")
	if err != nil {
		t.Fatal(err)
	}
	for _, ig := range doc.(map[string]any)["instance_groups"].([]any) {
		ig := ig.(map[string]any)
		if ig["name"] != "pcap-server-api" {
			continue
		}
		for _, j := range ig["jobs"].([]any) {
			j := j.(map[string]any)
			props, _ := j["properties"].(map[string]any)
			switch j["name"] {
			case "pcap-server-api":
				apiProps = fillVars(t, props, vars).(map[string]any)
			case "route_registrar":
				routes := props["route_registrar"].(map[string]any)["routes"].([]any)
				if len(routes) != 1 {
					t.Fatalf("route_registrar registers %d routes, the test expects the API's one", len(routes))
				}
				route = fillVars(t, routes[0], vars).(map[string]any)
			}
		}
	}
	if apiProps == nil || route == nil {
		t.Fatal("manifests/pcap-server.yml: no pcap-server-api instance group with the jobs pcap-server-api and route_registrar")
	}
	return apiProps, route
}

var manifestVar = regexp.MustCompile(`\(\(([^()]+)\)\)`)

// fillVars replaces the manifest's ((variables)) in a copy of v, as the
// director does; a variable without a value fails the test.
func fillVars(t *testing.T, v any, vars map[string]string) any {
	return transform(v, func(s string) string {
		return manifestVar.ReplaceAllStringFunc(s, func(m string) string {
			name := m[2 : len(m)-2]
			value, ok := vars[name]
			if !ok {
				t.Fatalf("the manifest's ((%s)) has no value in the test", name)
			}
			return value
		})
	})
}

// deepCopy copies a route, whose maps the test changes.
func deepCopy(m map[string]any) map[string]any {
	return transform(m, func(s string) string { return s }).(map[string]any)
}

// transform copies v, a decoded YAML value, applying f to its strings.
func transform(v any, f func(string) string) any {
	switch v := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, e := range v {
			out[k] = transform(e, f)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = transform(e, f)
		}
		return out
	case string:
		return f(v)
	}
	return v
}

// renderAPIJob renders jobs/pcap-server-api with props as the director
// would and returns the folder it rendered into.
func renderAPIJob(t *testing.T, props map[string]any) string {
	t.Helper()
	dir := t.TempDir()
	err := boshrelease.Render(context.Background(), boshrelease.RenderRequest{
		JobDir: "../../jobs/pcap-server-api", OutDir: dir, Properties: props,
		Instance: boshrelease.Instance{ID: "e2e", Name: "pcap-server-api", Deployment: "pcap-server", IP: "127.0.0.1", AZ: "z1"},
	})
	if err != nil {
		t.Fatalf("render the pcap-server-api job (make test installs ruby): %v", err)
	}
	return dir
}
