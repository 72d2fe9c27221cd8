package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cloudfoundry/pcap-server-release/proxy/apiconfig"
	"github.com/cloudfoundry/pcap-server-release/test/realcf"
)

// quietKnobs make a quiet capture outlive the API's write timeout within
// seconds: a write may take 1 s, pcapng statistics come every 250 ms.
func quietKnobs(c *apiconfig.Config) {
	c.Stream.WriteTimeout = configDuration(time.Second)
	c.Stream.StatsInterval = configDuration(250 * time.Millisecond)
	c.Limits.CapturesPerUser, c.Limits.CapturesPerAgent = 16, 16
}

// The API behind the real gorouter, registered as the deployment
// manifest registers it (TLS to the API, HTTP/2) and by a plain port
// route: captures with trailers over HTTP/1.1 and HTTP/2, the stop
// through the gorouter, quiet captures, a load balancer that cuts idle
// connections, and the audit lines' view of the gorouter.
func TestThroughTheGorouter(t *testing.T) {
	f := newRouted(t, quietKnobs)
	r := f.startRouter(t, realcf.RouterOptions{})
	client := func(http2 bool) *http.Client { return &http.Client{Transport: r.Transport(http2)} }

	t.Run("route table", func(t *testing.T) {
		table, err := r.RouteTable()
		if err != nil {
			t.Fatal(err)
		}
		if e := table[tlsHost]; len(e) != 1 || e[0]["protocol"] != "http2" || e[0]["tls"] != true || e[0]["server_cert_domain_san"] != tlsHost {
			t.Errorf("%s: %v", tlsHost, e)
		}
		if e := table[plainHost]; len(e) != 1 || e[0]["protocol"] != "http1" || e[0]["tls"] != false {
			t.Errorf("%s: %v", plainHost, e)
		}
	})

	t.Run("captures with trailers", func(t *testing.T) {
		for _, tc := range []struct {
			name  string
			http2 bool
			base  string
		}{
			{"TLS route over HTTP/2", true, r.URL(tlsHost, true)},
			{"TLS route over HTTP/1.1 and TLS", false, r.URL(tlsHost, true)},
			{"TLS route over plain HTTP/1.1", false, r.URL(tlsHost, false)},
			{"port route over plain HTTP/1.1", false, r.URL(plainHost, false)},
			{"port route over HTTP/2", true, r.URL(plainHost, true)},
		} {
			t.Run(tc.name, func(t *testing.T) {
				resp := captureVia(t, client(tc.http2), tc.base, url.Values{"filter": {"udp"}, "packets": {"5"}})
				if resp.StatusCode != http.StatusOK || resp.ProtoMajor != map[bool]int{false: 1, true: 2}[tc.http2] {
					t.Fatalf("status %d over %s: %s", resp.StatusCode, resp.Proto, finish(t, resp).body)
				}
				tag := strings.ReplaceAll(tc.name, " ", "-")
				f.app.send(t, tag, 5)
				res := finish(t, resp)
				if tr := res.trailer; tr.Get("Pcap-End-Reason") != "packets" || tr.Get("Pcap-Packets") != "5" ||
					tr.Get("Pcap-Bytes") != fmt.Sprint(len(res.body)) || tr.Get("Pcap-Dropped") != "0" {
					t.Fatalf("trailers %v, body %d bytes", tr, len(res.body))
				}
				rows := tshark(t, res.file, "udp.payload")
				for i, row := range rows {
					if row[0] != hexOf(payload(tag, i)) {
						t.Fatalf("packet %d: %s", i, row[0])
					}
				}
				if len(rows) != 5 {
					t.Fatalf("%d packets in the file", len(rows))
				}
			})
		}
	})

	t.Run("stop through the gorouter", func(t *testing.T) {
		for _, http2 := range []bool{true, false} {
			c := client(http2)
			base := r.URL(tlsHost, true)
			resp := captureVia(t, c, base, url.Values{"filter": {"udp"}, "duration": {"1m"}})
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", resp.StatusCode, finish(t, resp).body)
			}
			f.app.send(t, "stop", 3)
			head := readPackets(t, resp, 3)
			if got := stopVia(t, c, base, resp.Header.Get("Pcap-Capture-Id")); got != http.StatusAccepted {
				t.Fatalf("HTTP/2 %v: stop answered %d", http2, got)
			}
			rest := finish(t, resp)
			if tr := rest.trailer; tr.Get("Pcap-End-Reason") != "requested" || tr.Get("Pcap-Packets") != "3" {
				t.Fatalf("HTTP/2 %v: trailers after the stop %v", http2, tr)
			}
			file := filepath.Join(t.TempDir(), "stopped.pcap")
			if err := os.WriteFile(file, append(head, rest.body...), 0o644); err != nil {
				t.Fatal(err)
			}
			if rows := tshark(t, file, "udp.payload"); len(rows) != 3 {
				t.Fatalf("HTTP/2 %v: %d packets in the file", http2, len(rows))
			}
		}
	})

	// No packet for three times the API's write timeout: every capture
	// ends at its duration with its trailers, direct and through the
	// gorouter, over HTTP/1.1 and HTTP/2.
	t.Run("quiet captures outlive the write timeout", func(t *testing.T) {
		// Statistics every 250 ms: a quiet pcapng stream is not silent.
		f.quietCaptures(t, 3*time.Second, 3)
	})

	// A load balancer that closes connections idle for 2 s stands in
	// front of the gorouter (AWS ELB: 60 s, against a 30 s ceiling of the
	// statistics interval; here statistics come every 250 ms). A quiet
	// pcapng capture keeps its connection busy and ends normally; a quiet
	// classic pcap has nothing to send and is cut, which is why the README
	// suggests pcapng.
	t.Run("load balancer idle timeout", func(t *testing.T) {
		lb := startIdleProxy(t, r.HTTPSAddr, 2*time.Second)
		viaLB := func() *http.Client {
			tr := r.Transport(true)
			d := &net.Dialer{}
			tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
				return d.DialContext(ctx, network, lb.addr())
			}
			return &http.Client{Transport: tr}
		}
		resps := map[string]*http.Response{}
		for _, format := range []string{"pcapng", "pcap"} {
			// A connection each: HTTP/2 would share one otherwise.
			resp := captureVia(t, viaLB(), r.URL(tlsHost, true), url.Values{"filter": {"udp port 1"}, "duration": {"5s"}, "format": {format}})
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%s: status %d", format, resp.StatusCode)
			}
			resps[format] = resp
		}
		// Both run meanwhile; each is read to its end in turn.
		results := map[string]*captureResp{}
		for format, resp := range resps {
			results[format] = finish(t, resp)
		}
		if tr := results["pcapng"].trailer; tr.Get("Pcap-End-Reason") != "duration" {
			t.Errorf("quiet pcapng behind the idle load balancer: trailers %v", tr)
		}
		if tr := results["pcap"].trailer; tr.Get("Pcap-End-Reason") != "" {
			t.Errorf("quiet classic pcap was not cut by the idle load balancer (the proxy does not work): %v", tr)
		}
		for _, res := range results {
			tshark(t, res.file, "frame.number")
		}
	})

	// Behind the gorouter remote_addr is the gorouter; forwarded_for and
	// vcap_request_id say who asked and join the gorouter's access log.
	t.Run("audit lines", func(t *testing.T) {
		// A refusal and a stop through the gorouter, besides the captures.
		req, _ := http.NewRequest(http.MethodGet, r.URL(tlsHost, true)+"/v1/apps/"+appGUID+"/capture", nil)
		req.Header.Set("Authorization", "bearer wrong-token")
		req.Header.Set("X-Forwarded-For", clientXFF)
		resp, err := client(true).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("a wrong token: %d", resp.StatusCode)
		}
		if got := stopVia(t, client(true), r.URL(tlsHost, true), "0123456789abcdef"); got != http.StatusNotFound {
			t.Fatalf("stop of no capture: %d", got)
		}
		uuid := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
		access := r.Log("access")
		seen := map[string]bool{}
		for _, rec := range f.tlsAPI.auditLines(t) {
			ff, hasFF := rec["forwarded_for"]
			id, hasID := rec["vcap_request_id"]
			if !hasFF || !hasID {
				t.Fatalf("audit line without forwarded_for or vcap_request_id: %v", rec)
			}
			if !strings.HasPrefix(fmt.Sprint(rec["remote_addr"]), "127.0.0.1:") {
				t.Errorf("remote_addr %v", rec["remote_addr"])
			}
			if id == "" { // a direct request: what the client sent, nothing more
				if ff != clientXFF {
					t.Errorf("direct request: forwarded_for %q", ff)
				}
				continue
			}
			// The client's claim, then the address the gorouter saw.
			if ff != clientXFF+", 127.0.0.1" || !uuid.MatchString(fmt.Sprint(id)) {
				t.Errorf("through the gorouter: forwarded_for %q, vcap_request_id %q", ff, id)
			}
			seen[fmt.Sprint(rec["event"])] = true
			if rec["event"] == "capture" && rec["end_reason"] != "client_gone" && !strings.Contains(access, fmt.Sprint(id)) {
				t.Errorf("vcap_request_id %s of a capture is not in the gorouter's access log", id)
			}
		}
		for _, event := range []string{"capture", "refused", "stop", "stop_refused"} {
			if !seen[event] {
				t.Errorf("no %s audit line through the gorouter", event)
			}
		}
	})
}

// A gorouter whose request timeout (10 s) is shorter than the capture
// cuts the stream without trailers: the CLI keeps a valid file, says the
// stream was cut, names the capture and the router's request timeout,
// and exits 1. Over HTTP/2 (the TLS route) and HTTP/1.1 (the port route).
func TestGorouterRequestTimeoutCut(t *testing.T) {
	f := newRouted(t, func(c *apiconfig.Config) { c.Limits.CapturesPerUser = 4 })
	cut := f.startRouter(t, realcf.RouterOptions{RequestTimeout: 10 * time.Second})
	caFile := filepath.Join(t.TempDir(), "router-ca.pem")
	if err := os.WriteFile(caFile, cut.CA, 0o644); err != nil {
		t.Fatal(err)
	}
	hosts := cut.HostsFile(t, tlsHost, plainHost)
	type run struct {
		name, apiURL, file string
		cmd                *exec.Cmd
		lines              <-chan string
		stderr             *bytes.Buffer
	}
	var runs []*run
	for _, c := range []struct{ name, apiURL string }{
		{"HTTP/2", cut.URL(tlsHost, true)},
		{"HTTP/1.1", cut.URL(plainHost, false)},
	} {
		ru := &run{name: c.name, apiURL: c.apiURL, file: filepath.Join(t.TempDir(), "cut.pcap")}
		ru.cmd = exec.Command(binary(t, "pcap-server-cli"), "pcap", appName, "--api-url", c.apiURL, "--token", devToken,
			"--app-guid", appGUID, "-f", "udp", "--duration", "1m", "-o", ru.file)
		ru.cmd.Env = append(os.Environ(), "PCAP_API_URL=", "PCAP_TOKEN=", "SSL_CERT_FILE="+caFile)
		realcf.InHosts(ru.cmd, hosts)
		ru.lines, ru.stderr = startWatchingStderr(t, ru.cmd)
		runs = append(runs, ru)
	}
	idOf := regexp.MustCompile(`\(capture ([0-9a-f]{16})\)`)
	ids := map[*run]string{}
	for _, ru := range runs {
		ids[ru] = idOf.FindStringSubmatch(waitLine(t, ru.lines, idOf))[1]
	}
	f.app.send(t, "before-the-cut", 4)
	for _, ru := range runs {
		for range ru.lines {
		}
		err := waitCmd(t, ru.cmd)
		text := ru.stderr.String()
		if code := exitCode(err); code != 1 {
			t.Errorf("%s: exit %d:\n%s", ru.name, code, text)
		}
		for _, want := range []string{
			"capture " + ids[ru] + " was cut off",
			"the file is valid and holds every packet received until then",
			"request_timeout_in_seconds",
		} {
			if !strings.Contains(text, want) {
				t.Errorf("%s: stderr lacks %q:\n%s", ru.name, want, text)
			}
		}
		if rows := tshark(t, ru.file, "udp.payload"); len(rows) != 4 {
			t.Errorf("%s: %d packets in the file, want the 4 sent before the cut", ru.name, len(rows))
		}
	}
}

// countISBs counts the Interface Statistics Blocks of a pcapng stream.
func countISBs(b []byte) int {
	n := 0
	for len(b) >= 12 {
		size := int(uint32(b[4]) | uint32(b[5])<<8 | uint32(b[6])<<16 | uint32(b[7])<<24)
		if size < 12 || size > len(b) {
			break
		}
		if b[0] == 5 && b[1] == 0 && b[2] == 0 && b[3] == 0 {
			n++
		}
		b = b[size:]
	}
	return n
}
