package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/gopacket/gopacket/pcapgo"

	"github.com/cloudfoundry/pcap-server-release/cellagent/nsenter"
	"github.com/cloudfoundry/pcap-server-release/test/netnstest"
	"github.com/cloudfoundry/pcap-server-release/test/testpki"
)

// dialIn dials from inside the network namespace at path.
func dialIn(path string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := nsenter.Do(path, false, func() (err error) {
			c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}

// serve serves h on l until the test ends.
func serve(t *testing.T, l net.Listener, h http.Handler) {
	t.Helper()
	srv := &http.Server{Handler: h}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(l)
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
}

// envoyApp is a Cloud Foundry app container in small: an HTTP server on
// the namespace's own address, port 8080, and in front of it a TLS proxy
// on port 61001, as envoy terminates the gorouter's TLS. The proxy reaches
// the app at the namespace's own address, which Linux routes over lo.
type envoyApp struct {
	*app
	client *http.Client // in the peer namespace, trusting the proxy
}

func newEnvoyApp(t *testing.T) *envoyApp {
	t.Helper()
	a := newApp(t)
	appAddr := netnstest.AppIP.String()
	serve(t, a.pair.App.Listen(t, appAddr+":8080"), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "plaintext answer to %s\n", r.URL.Path)
	}))
	ca, err := testpki.NewCA("e2e envoy CA")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Server(appAddr)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := leaf.TLS()
	if err != nil {
		t.Fatal(err)
	}
	upstream := &url.URL{Scheme: "http", Host: appAddr + ":8080"}
	proxy := &httputil.ReverseProxy{
		Rewrite:   func(r *httputil.ProxyRequest) { r.SetURL(upstream) },
		Transport: &http.Transport{DialContext: dialIn(a.pair.App.Path()), DisableKeepAlives: true},
	}
	serve(t, tls.NewListener(a.pair.App.Listen(t, appAddr+":61001"), &tls.Config{Certificates: []tls.Certificate{cert}}), proxy)
	client := &http.Client{Transport: &http.Transport{
		DialContext:       dialIn(a.pair.Peer.Path()),
		TLSClientConfig:   &tls.Config{RootCAs: ca.Pool()},
		DisableKeepAlives: true,
	}}
	return &envoyApp{app: a, client: client}
}

// get asks the app through its TLS proxy, as the gorouter does.
func (e *envoyApp) get(t *testing.T, path string) {
	t.Helper()
	resp, err := e.client.Get("https://" + netnstest.AppIP.String() + ":61001" + path)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "plaintext answer to "+path) {
		t.Fatalf("GET %s: %d %q %v", path, resp.StatusCode, body, err)
	}
}

// The README's recipe: eth0 holds the TLS from the router to envoy, lo
// the plaintext between envoy and the app, in one timeline, each device
// an interface that says what it is.
func TestDevicesShowTLSOnEth0AndPlaintextOnLo(t *testing.T) {
	netnstest.RequireRoot(t)
	p := newPKI(t)
	e := newEnvoyApp(t)
	api := startAPI(t, p, oneInstance("127.0.0.1"), nil)
	startAgent(t, p, api, "127.0.0.1", map[string]string{appGUID + "/0": e.pair.App.Path()})

	out := filepath.Join(t.TempDir(), "envoy.pcapng")
	cmd := cliCmd(t, api, "-d", "eth0,lo", "-f", "tcp port 8080 or tcp port 61001", "-o", out)
	lines, stderr := startWatchingStderr(t, cmd)
	waitLine(t, lines, regexp.MustCompile(`^Capturing app my-app`))
	paths := []string{"/plaintext-0", "/plaintext-1", "/plaintext-2"}
	for _, path := range paths {
		e.get(t, path)
	}
	// As Ctrl-C: the capture is stopped, the agent drains its rings.
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	for range lines {
	}
	if err := waitCmd(t, cmd); err != nil {
		t.Fatalf("cli: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "ended: stopped on request") {
		t.Fatalf("summary: %s", stderr.String())
	}

	// TLS 1.3 records show their true type only encrypted: application
	// data (23) is their outer, opaque type.
	rows := tsharkArgs(t, out, []string{"-d", "tcp.port==61001,tls"}, "frame.interface_name", "frame.interface_description",
		"tcp.srcport", "tcp.dstport", "http.request.uri", "tls.record.opaque_type", "frame.time_epoch")
	var uris []string
	seen := map[string]int{}
	tlsData := 0
	last := ""
	for _, row := range rows {
		name, desc, sport, dport, uri, tlsType, ts := row[0], row[1], row[2], row[3], row[4], row[5], row[6]
		seen[name]++
		device := strings.TrimPrefix(name, appName+"/0/")
		for _, part := range []string{"app " + appName + " (" + appGUID + ")", "instance 0", "process web", "cell 127.0.0.1", "device " + device, "container " + appGUID + "/0"} {
			if !strings.Contains(desc, part) {
				t.Fatalf("interface %s: description %q lacks %q", name, desc, part)
			}
		}
		ports := []string{sport, dport}
		switch device {
		case "eth0":
			if !slices.Contains(ports, "61001") || uri != "" {
				t.Fatalf("eth0 carries ports %v, request %q", ports, uri)
			}
			if strings.Contains(tlsType, "23") {
				tlsData++
			}
		case "lo":
			if !slices.Contains(ports, "8080") {
				t.Fatalf("lo carries ports %v", ports)
			}
			if uri != "" {
				uris = append(uris, uri)
			}
		default:
			t.Fatalf("packet on interface %q", name)
		}
		if ts < last {
			t.Fatalf("not in timestamp order across devices: %s after %s", ts, last)
		}
		last = ts
	}
	if seen[appName+"/0/eth0"] == 0 || seen[appName+"/0/lo"] == 0 {
		t.Fatalf("packets by interface %v", seen)
	}
	if !slices.Equal(uris, paths) {
		t.Fatalf("HTTP requests on lo: %v, want %v", uris, paths)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ng, err := pcapgo.NewNgReader(f, pcapgo.DefaultNgReaderOptions)
	if err != nil || !strings.HasPrefix(ng.SectionInfo().Application, "pcap-server-api ") {
		t.Fatalf("section header: %v, application %q", err, ng.SectionInfo().Application)
	}
	if tlsData < 2*len(paths) {
		t.Fatalf("%d packets of TLS application data on eth0 for %d requests", tlsData, len(paths))
	}
}

// A device the container lacks is an instance error naming it; the
// other device still captures. With no device at all the request fails.
func TestMissingDeviceIsNamedAndTheOthersCapture(t *testing.T) {
	api, a := setup(t)
	resp := startCapture(t, api, url.Values{"device": {"eth0,nosuch0"}, "filter": {"udp"}, "packets": {"10"}})
	errs := resp.Header.Get("Pcap-Instance-Errors")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/x-pcapng" || resp.Header.Get("Pcap-Instances") != "0" ||
		!strings.HasPrefix(errs, "0: device nosuch0: ") || strings.Contains(errs, "eth0") {
		t.Fatalf("status %d, %q, instances %q, errors %q", resp.StatusCode, resp.Header.Get("Content-Type"), resp.Header.Get("Pcap-Instances"), errs)
	}
	a.send(t, "missing", 10)
	r := finish(t, resp)
	rows := tshark(t, r.file, "frame.interface_name", "udp.payload")
	if len(rows) != 10 {
		t.Fatalf("%d packets", len(rows))
	}
	for i, row := range rows {
		if row[0] != appName+"/0/eth0" || row[1] != hexOf(payload("missing", i)) {
			t.Fatalf("packet %d: %v", i, row)
		}
	}

	r = finish(t, startCapture(t, api, url.Values{"device": {"nosuch0", "nosuch1"}}))
	var prob struct {
		Detail string `json:"detail"`
	}
	if err := json.Unmarshal(r.body, &prob); err != nil || r.status != http.StatusBadRequest ||
		!strings.Contains(prob.Detail, "device nosuch0: ") || !strings.Contains(prob.Detail, "device nosuch1: ") {
		t.Fatalf("no device: %d %s", r.status, r.body)
	}
}
