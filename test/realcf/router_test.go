package realcf_test

import (
	"crypto/tls"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cloudfoundry/pcap-server-release/test/realcf"
	"github.com/cloudfoundry/pcap-server-release/test/testpki"
)

// What the harness promises its users: a TLS backend registered with
// tls_port and protocol http2 is reached over HTTP/2 whatever the client
// speaks, the gorouter's headers arrive, and a process given the hosts
// file reaches the gorouter by name.
func TestRouterReachesATLSBackend(t *testing.T) {
	b := realcf.Require(t, "gorouter")
	if os.Getuid() != 0 {
		t.Skip("skipped: InHosts needs root for its mount namespace")
	}
	ca, err := testpki.NewCA("backend CA")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.ServerRSA("backend.sys.realcf.test")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := leaf.TLS()
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]string{"proto": r.Proto, "xff": r.Header.Get("X-Forwarded-For"),
			"request_id": r.Header.Get("X-Vcap-Request-Id")})
	})}
	srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
	go func() { _ = srv.ServeTLS(l, "", "") }()
	t.Cleanup(func() { _ = srv.Close() })

	health := filepath.Join(t.TempDir(), "health")
	if err := os.WriteFile(health, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	r := realcf.StartRouter(t, b, realcf.RouterOptions{
		BackendCA: ca.CertPEM,
		Routes: []map[string]any{{
			"name": "backend", "registration_interval": "20s", "uris": []any{"backend.sys.realcf.test"},
			"tls_port": l.Addr().(*net.TCPAddr).Port, "server_cert_domain_san": "backend.sys.realcf.test", "protocol": "http2",
			"health_check": map[string]any{"name": "backend", "script_path": health, "timeout": "5s"},
		}},
	})
	table, err := r.RouteTable()
	if err != nil {
		t.Fatal(err)
	}
	if e := table["backend.sys.realcf.test"]; len(e) != 1 || e[0]["protocol"] != "http2" || e[0]["tls"] != true {
		t.Fatalf("route table entry %v", e)
	}
	for _, h2 := range []bool{false, true} {
		c := &http.Client{Transport: r.Transport(h2)}
		resp, err := c.Get(r.URL("backend.sys.realcf.test", true) + "/")
		if err != nil {
			t.Fatal(err)
		}
		var seen map[string]string
		err = json.NewDecoder(resp.Body).Decode(&seen)
		resp.Body.Close()
		if err != nil || resp.ProtoMajor != map[bool]int{false: 1, true: 2}[h2] || seen["proto"] != "HTTP/2.0" ||
			seen["xff"] != "127.0.0.1" || len(seen["request_id"]) != 36 {
			t.Fatalf("client HTTP/2 %v: client got %s, backend saw %v (%v)", h2, resp.Proto, seen, err)
		}
	}

	cmd := exec.Command("curl", "-fsS", "--cacert", filepath.Join(r.Dir, "ca.pem"), r.URL("backend.sys.realcf.test", true)+"/")
	if err := os.WriteFile(filepath.Join(r.Dir, "ca.pem"), r.CA, 0o644); err != nil {
		t.Fatal(err)
	}
	realcf.InHosts(cmd, r.HostsFile(t, "backend.sys.realcf.test"))
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"proto":"HTTP/2.0"`) {
		t.Fatalf("curl by name in the hosts file: %v\n%s", err, out)
	}
	// The machine's own /etc/hosts is untouched.
	if hosts, _ := os.ReadFile("/etc/hosts"); strings.Contains(string(hosts), "realcf.test") {
		t.Fatal("/etc/hosts names the test's hosts")
	}
}
