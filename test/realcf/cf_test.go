package realcf_test

import (
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cloudfoundry/pcap-server-release/test/realcf"
	"github.com/cloudfoundry/pcap-server-release/test/testpki"
)

// The harness's cf reaches a foundation by name through its own hosts
// file, trusts the test's CA, keeps its config in its own CF_HOME, and
// runs at a terminal where `cf` is it.
func TestCFHasItsOwnNamesHomeAndTerminal(t *testing.T) {
	b := realcf.Require(t, "cf CLI")
	if os.Geteuid() != 0 {
		t.Skip("skipped: the cf CLI's private hosts file needs a mount namespace, which needs root (CI runs as root)")
	}
	ca, err := testpki.NewCA("realcf test CA")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Server("api.sys.realcf.test")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := leaf.TLS()
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		base := "https://" + r.Host
		w.Header().Set("Content-Type", "application/json")
		// The root document as far as `cf api` reads it.
		_, _ = w.Write([]byte(`{"links":{"self":{"href":"` + base + `"},"cloud_controller_v3":{"href":"` + base +
			`/v3","meta":{"version":"3.195.0"}},"login":{"href":"` + base + `"},"uaa":{"href":"` + base + `"}}}`))
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	defer srv.Close()
	caFile, err := ca.WriteFile(t.TempDir(), "ca")
	if err != nil {
		t.Fatal(err)
	}
	cf := b.NewCF(t, realcf.CFOptions{Hosts: map[string]string{"api.sys.realcf.test": "127.0.0.1"}, CAFile: caFile})
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	target := "https://api.sys.realcf.test:" + strconv.Itoa(port)
	cf.Run("api", target)
	data, err := os.ReadFile(cf.ConfigPath())
	if err != nil || !strings.Contains(string(data), `"Target": "`+target+`"`) {
		t.Fatalf("config.json in CF_HOME: %v\n%s", err, data)
	}
	sh := cf.Shell(t)
	sh.Type("cf version; echo \"rc=$?\"\n")
	sh.Expect(regexp.MustCompile(`cf version 9\.`), 10*time.Second)
	sh.Expect(regexp.MustCompile(`rc=0`), 10*time.Second)
}
