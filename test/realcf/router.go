package realcf

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mathrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cloudfoundry/pcap-server-release/test/testpki"
)

// RouterOptions configure a gorouter with its NATS and route-registrar.
type RouterOptions struct {
	// Domain is the system domain: the gorouter's certificate covers
	// *.Domain. Default sys.realcf.test.
	Domain string
	// RequestTimeout is the gorouter's endpoint_timeout, which the job
	// property request_timeout_in_seconds sets; default 900 s.
	RequestTimeout time.Duration
	// BackendCA is the PEM of the CA that signed the certificates of TLS
	// backends: the gorouter's ca_certs.
	BackendCA []byte
	// Routes are route-registrar's routes, as its JSON configuration has
	// them ("uris", "port" or "tls_port", "health_check", ...). Every
	// route's uris are awaited in the gorouter's route table.
	Routes []map[string]any
	// Tracing turns on the gorouter's zipkin and W3C tracing (B3 and
	// traceparent headers to backends).
	Tracing bool
}

// Router is a running gorouter, the NATS it subscribes to and a
// route-registrar registering RouterOptions.Routes, all on loopback (the
// gorouter also binds its ports on every interface, which nothing else
// reaches here). StartRouter stops them when the test ends.
type Router struct {
	// Domain is the system domain the certificate covers.
	Domain string
	// HTTPAddr and HTTPSAddr are the gorouter's plain and TLS ports.
	HTTPAddr, HTTPSAddr string
	// CA is the PEM of the CA of the gorouter's certificate.
	CA []byte
	// Dir holds the configurations and the logs: gorouter.log,
	// access.log, nats.log, route-registrar.log.
	Dir string

	routesAddr string
	procs      []*process
}

// StartRouter starts NATS, then the gorouter once NATS answers, then
// route-registrar once the gorouter is healthy (a registration sent
// before the gorouter subscribed is lost until the next interval), and
// returns once every route is in the gorouter's table. The configurations
// are the examples' (realcf/examples), rendered with this test's ports
// and certificates.
func StartRouter(t testing.TB, b *Binaries, opts RouterOptions) *Router {
	t.Helper()
	if opts.Domain == "" {
		opts.Domain = "sys.realcf.test"
	}
	if opts.RequestTimeout == 0 {
		opts.RequestTimeout = 900 * time.Second
	}
	r := &Router{Domain: opts.Domain, Dir: t.TempDir()}
	t.Cleanup(func() { r.stop(t) })
	ca, err := testpki.NewCA("gorouter CA")
	if err != nil {
		t.Fatal(err)
	}
	r.CA = ca.CertPEM
	// RSA: the gorouter's cipher suites are ECDHE-RSA only.
	leaf, err := ca.ServerRSA("*." + opts.Domain)
	if err != nil {
		t.Fatal(err)
	}
	ports := freePorts(t, 7)
	r.HTTPAddr, r.HTTPSAddr = loopback(ports[0]), loopback(ports[1])
	r.routesAddr = loopback(ports[3])
	statusAddr, natsPort := loopback(ports[2]), ports[4]
	vars := map[string]string{
		"GR_HTTP_PORT": strconv.Itoa(ports[0]), "GR_HTTPS_PORT": strconv.Itoa(ports[1]),
		"GR_STATUS_PORT": strconv.Itoa(ports[2]), "GR_ROUTES_PORT": strconv.Itoa(ports[3]),
		"NATS_PORT": strconv.Itoa(natsPort), "GR_RS_PORT": strconv.Itoa(ports[5]), "GR_METRON_PORT": strconv.Itoa(ports[6]),
		"NATS_USER": "nats", "NATS_PASS": "nats-password",
		"GR_ACCESS_LOG": filepath.Join(r.Dir, "access.log"), "GR_PID_FILE": filepath.Join(r.Dir, "gorouter.pid"),
		"GR_REQUEST_TIMEOUT": strconv.Itoa(int(opts.RequestTimeout.Round(time.Second).Seconds())),
		"ROUTER_CERT_JSON":   jsonString(leaf.CertPEM), "ROUTER_KEY_JSON": jsonString(leaf.KeyPEM),
		"API_CA_JSON": jsonString(opts.BackendCA),
	}
	gorouterYML := render(t, b.Example("gorouter.yml.tmpl"), vars)
	if opts.Tracing {
		gorouterYML += "tracing:\n  enable_zipkin: true\n  enable_w3c: true\n"
	}
	writeFile(t, filepath.Join(r.Dir, "gorouter.yml"), gorouterYML)
	writeFile(t, filepath.Join(r.Dir, "registrar.json"), registrarConfig(t, b, vars, opts.Routes))

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	nats := r.start(t, "nats", b.NATSServer(), "-a", "127.0.0.1", "-p", vars["NATS_PORT"], "--user", vars["NATS_USER"], "--pass", vars["NATS_PASS"])
	await(t, ctx, nats, "NATS to accept clients", func() error { return natsReady(loopback(natsPort)) })
	gorouter := r.start(t, "gorouter", b.Gorouter(), "-c", filepath.Join(r.Dir, "gorouter.yml"))
	// /health answers 503 until start_response_delay_interval has passed.
	await(t, ctx, gorouter, "the gorouter to be healthy", func() error { return httpOK("http://" + statusAddr + "/health") })
	registrar := r.start(t, "route-registrar", b.RouteRegistrar(), "-configPath", filepath.Join(r.Dir, "registrar.json"))
	var uris []string
	for _, route := range opts.Routes {
		for _, u := range route["uris"].([]any) {
			uris = append(uris, u.(string))
		}
	}
	await(t, ctx, registrar, fmt.Sprintf("the routes %v in the gorouter", uris), func() error { return r.hasRoutes(uris) })
	return r
}

// RouteTable is the gorouter's route table (its routes endpoint): by URI,
// the registered endpoints.
func (r *Router) RouteTable() (map[string][]map[string]any, error) {
	req, err := http.NewRequest(http.MethodGet, "http://"+r.routesAddr+"/routes", nil)
	if err != nil {
		return nil, err
	}
	// The example configuration sets no credentials: empty ones pass.
	req.SetBasicAuth("", "")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("routes: %s", resp.Status)
	}
	var table map[string][]map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&table); err != nil {
		return nil, fmt.Errorf("routes: %w", err)
	}
	return table, nil
}

func (r *Router) hasRoutes(uris []string) error {
	table, err := r.RouteTable()
	if err != nil {
		return err
	}
	for _, u := range uris {
		if len(table[u]) == 0 {
			return fmt.Errorf("no route for %s yet", u)
		}
	}
	return nil
}

// URL is the gorouter's URL for host: https on its TLS port, or http on
// its plain one.
func (r *Router) URL(host string, https bool) string {
	if https {
		return "https://" + host + ":" + port(r.HTTPSAddr)
	}
	return "http://" + host + ":" + port(r.HTTPAddr)
}

// Transport reaches every host through the gorouter, trusting its CA.
// With http2 it speaks HTTP/2 where the gorouter does (over TLS only: the
// gorouter has no h2c); otherwise HTTP/1.1 everywhere.
func (r *Router) Transport(http2 bool) *http.Transport {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(r.CA)
	d := &net.Dialer{Timeout: 5 * time.Second}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if port(addr) == port(r.HTTPSAddr) {
				return d.DialContext(ctx, network, r.HTTPSAddr)
			}
			return d.DialContext(ctx, network, r.HTTPAddr)
		},
		TLSClientConfig:   &tls.Config{RootCAs: pool},
		ForceAttemptHTTP2: http2,
	}
	if !http2 {
		// A non-nil, empty map turns HTTP/2 off.
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	return tr
}

// HostsFile writes a hosts file that sends every name to the gorouter's
// address (loopback), for a process run with InHosts.
func (r *Router) HostsFile(t testing.TB, names ...string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("127.0.0.1 localhost\n")
	for _, n := range names {
		fmt.Fprintf(&b, "127.0.0.1 %s\n", n)
	}
	path := filepath.Join(r.Dir, "hosts")
	writeFile(t, path, b.String())
	return path
}

// InHosts makes cmd see hostsFile as /etc/hosts, in a mount namespace of
// its own: the machine's /etc/hosts is never touched, and the bind mount
// ends with the process. cmd keeps its process id (unshare and the shell
// exec it), so signals to cmd.Process reach it. Needs root.
func InHosts(cmd *exec.Cmd, hostsFile string) {
	args := append([]string{"-m", "--propagation", "private", "/bin/sh", "-c",
		`mount --bind "$0" /etc/hosts && exec "$@"`, hostsFile, cmd.Path}, cmd.Args[1:]...)
	cmd.Path, cmd.Err = exec.LookPath("unshare")
	cmd.Args = append([]string{"unshare"}, args...)
}

// Log is a process's output so far: "gorouter", "nats",
// "route-registrar"; "access" is the gorouter's access log.
func (r *Router) Log(name string) string {
	data, _ := os.ReadFile(filepath.Join(r.Dir, name+".log"))
	return string(data)
}

// process is one started binary.
type process struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed once it has exited
	err  error
}

func (r *Router) start(t testing.TB, name, bin string, args ...string) *process {
	t.Helper()
	out, err := os.Create(filepath.Join(r.Dir, name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = r.Dir
	cmd.Stdout, cmd.Stderr = out, out
	// Should the test binary die, its children die with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		out.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	p := &process{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		out.Close()
		close(p.done)
	}()
	r.procs = append(r.procs, p)
	return p
}

// stop ends the processes in reverse order of their start: route-registrar
// first, which unregisters its routes. Each gets SIGTERM, then SIGKILL
// after 10 s.
func (r *Router) stop(t testing.TB) {
	for _, p := range slices.Backward(r.procs) {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			t.Errorf("%s did not stop within 10s of SIGTERM: killed", p.name)
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
	if t.Failed() {
		for _, name := range []string{"gorouter", "route-registrar", "nats"} {
			t.Logf("%s log (last 4 KiB):\n%s", name, tail(r.Log(name), 4096))
		}
	}
}

// await polls ready every 50 ms until it succeeds, the process exits or
// ctx ends.
func await(t testing.TB, ctx context.Context, p *process, what string, ready func() error) {
	t.Helper()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		err := ready()
		if err == nil {
			return
		}
		select {
		case <-p.done:
			t.Fatalf("%s exited (%v) while waiting for %s", p.name, p.err, what)
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, err)
		case <-tick.C:
		}
	}
}

// natsReady checks that NATS accepts a client: it greets with INFO.
func natsReady(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "INFO ") {
		return fmt.Errorf("NATS greeted with %q", line)
	}
	return nil
}

func httpOK(url string) error {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return errors.New(resp.Status)
	}
	return nil
}

// registrarConfig renders the example route-registrar configuration (its
// NATS and host settings) and puts routes in place of its example routes.
func registrarConfig(t testing.TB, b *Binaries, vars map[string]string, routes []map[string]any) string {
	t.Helper()
	// The example's own routes need values to parse; they are replaced.
	filler := map[string]string{"HOST_TLS": "example.invalid", "HOST_PLAIN": "example.invalid", "API_TLS_PORT": "1",
		"API_PLAIN_PORT": "1", "HC_TLS": "/bin/true", "HC_PLAIN": "/bin/true"}
	for k, v := range vars {
		filler[k] = v
	}
	var cfg map[string]any
	if err := json.Unmarshal([]byte(render(t, b.Example("route_registrar.json.tmpl"), filler)), &cfg); err != nil {
		t.Fatalf("route_registrar.json.tmpl: %v", err)
	}
	cfg["routes"] = routes
	data, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// render fills in a template's ${NAME}s as envsubst does (anything else,
// such as "${...}" in a comment, stays); a name without a value fails the
// test.
func render(t testing.TB, path string, vars map[string]string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var missing []string
	out := placeholder.ReplaceAllStringFunc(string(data), func(m string) string {
		name := m[2 : len(m)-1]
		v, ok := vars[name]
		if !ok {
			missing = append(missing, name)
		}
		return v
	})
	if len(missing) > 0 {
		t.Fatalf("%s: no value for %v", path, missing)
	}
	return out
}

var placeholder = regexp.MustCompile(`\$\{[A-Za-z_][A-Za-z0-9_]*\}`)

// jsonString quotes a PEM as a JSON string, which is valid YAML too.
func jsonString(b []byte) string {
	q, _ := json.Marshal(string(b))
	return string(q)
}

// freePorts finds n ports that are free on every interface (the gorouter
// binds its ports on all of them), below the kernel's ephemeral range:
// a port from that range, closed again before the gorouter binds it, may
// meanwhile become the local port of someone's outgoing connection, the
// gorouter's own to NATS among them ("address already in use").
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	low := ephemeralLow()
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for try := 0; len(ports) < n; try++ {
		if try == 1000 {
			t.Fatalf("no %d free ports below %d", n, low)
		}
		p := 10000 + mathrand.IntN(low-10000)
		l, err := net.Listen("tcp", ":"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		ls = append(ls, l)
		ports = append(ports, p)
	}
	return ports
}

// ephemeralLow is the first port the kernel hands out for outgoing
// connections (32768 unless configured otherwise).
func ephemeralLow() int {
	data, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	var low, high int
	if _, err := fmt.Sscan(string(data), &low, &high); err != nil || low <= 11000 {
		return 32768
	}
	return low
}

func loopback(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

func port(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
