package boshcmd

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/cloudfoundry/pcap-server-release/cli/pcapcmd"
)

func env(vars map[string]string) func(string) string { return func(k string) string { return vars[k] } }

func TestParse(t *testing.T) {
	o, err := Parse([]string{"router/0", "-e", "lab", "--device", "eth0,lo", "-d", "cf", "router", "-f", "tcp port 443", "router/0", "-c", "5", "--api-url", "https://pcap.sys"}, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if o.Environment != "lab" || o.Deployment != "cf" || !slices.Equal(o.Instances, []string{"router/0", "router"}) ||
		!slices.Equal(o.Devices, []string{"eth0", "lo"}) || o.Filter != "tcp port 443" || o.Count != 5 || o.Format != "pcapng" || o.Output != "cf.pcapng" {
		t.Fatalf("%+v", o)
	}
	// The bosh CLI's environment variables, and pcap for one instance and
	// device, as the pcap command decides.
	o, err = Parse([]string{"router/0"}, env(map[string]string{"BOSH_ENVIRONMENT": "lab", "BOSH_DEPLOYMENT": "cf", "PCAP_API_URL": "https://pcap.sys"}))
	if err != nil || o.Environment != "lab" || o.Deployment != "cf" || o.APIURL != "https://pcap.sys" || o.Format != "pcap" || o.Output != "cf.pcap" || o.Snaplen != 65535 {
		t.Fatalf("%+v, %v", o, err)
	}
	if o, _ := Parse([]string{"router", "-e", "lab", "-d", "cf", "--api-url", "u"}, env(nil)); o.Format != "pcapng" {
		t.Errorf("a whole group: format %s", o.Format)
	}
	base := []string{"-e", "lab", "-d", "cf", "--api-url", "https://pcap.sys"}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-d", "cf", "--api-url", "u", "router"}, "no environment"},
		{[]string{"-e", "lab", "--api-url", "u", "router"}, "no deployment"},
		{base, "name the instances"},
		{append([]string{"router/0/x"}, base...), "not an instance"},
		{append([]string{"router", "--format", "pcap", "--device", "eth0,lo"}, base...), "holds one device"},
		{append([]string{"router", "--format", "erf"}, base...), "--format"},
		{append([]string{"router", "--device", "a/b"}, base...), "not a network interface"},
		{[]string{"-e", "lab", "-d", "cf", "router"}, "no API URL"},
		{append([]string{"router", "--process", "web"}, base...), "process"},
	} {
		var ue *pcapcmd.UsageError
		if _, err := Parse(c.args, env(nil)); !errors.As(err, &ue) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.args, err, c.want)
		}
	}
}

func TestCaptureRequest(t *testing.T) {
	o, err := Parse([]string{"-e", "lab", "-d", "cf", "router/0", "router/6a3c", "--device", "eth0,lo", "-s", "128", "--duration", "30s", "--api-url", "https://pcap.sys/base/"}, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	c, err := Capture(o)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(c.URL)
	q := u.Query()
	if u.Path != "/base/v1/bosh/deployments/cf/capture" || !slices.Equal(q["instance"], []string{"router/0", "router/6a3c"}) ||
		!slices.Equal(q["device"], []string{"eth0", "lo"}) || q.Get("snaplen") != "128" || q.Get("duration") != "30s" || q.Get("format") != "pcapng" || q.Has("process") {
		t.Fatalf("%s", c.URL)
	}
	if got := c.StopURL("0123456789abcdef"); got != "https://pcap.sys/base/v1/bosh/deployments/cf/capture/0123456789abcdef" {
		t.Fatalf("stop %s", got)
	}
	if c.Subject != "deployment cf" || c.Devices != 2 || c.Output != "cf.pcapng" {
		t.Fatalf("%+v", c)
	}
}

// tokens hands out one token.
type tokens string

func (s tokens) Token(context.Context) (string, error) { return string(s), nil }

// A capture of VMs runs as a capture of apps: the token on the request,
// the first line, the instance errors, the summary; and the first
// Ctrl-C asks the API to stop it at the deployment's stop URL.
func TestRunStreamsAndStops(t *testing.T) {
	deleted := make(chan struct{})
	stopPath := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "bearer ops-token" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if r.Method == http.MethodDelete {
			stopPath <- r.URL.Path
			close(deleted)
			w.WriteHeader(http.StatusAccepted)
			return
		}
		w.Header().Set("Pcap-Capture-Id", "0123456789abcdef")
		w.Header().Set("Pcap-Instances", "router/0")
		w.Header().Set("Pcap-Instance-Errors", "router/1: no agent connected for VM router/1 (10.0.2.5)")
		w.Header().Set("Trailer", "Pcap-End-Reason")
		ng, _ := pcapgo.NewNgWriterInterface(w, pcapgo.NgInterface{Name: "router/0/eth0", LinkType: layers.LinkTypeEthernet, SnapLength: 65535}, pcapgo.DefaultNgWriterOptions)
		_ = ng.WritePacket(gopacket.CaptureInfo{Timestamp: time.Unix(1, 0), CaptureLength: 60, Length: 60}, make([]byte, 60))
		_ = ng.Flush()
		w.(http.Flusher).Flush()
		select {
		case <-deleted:
		case <-r.Context().Done():
		}
		w.Header().Set("Pcap-End-Reason", "requested")
	}))
	t.Cleanup(srv.Close)
	out := filepath.Join(t.TempDir(), "cap.pcapng")
	o, err := Parse([]string{"-e", "lab", "-d", "cf", "router", "--api-url", srv.URL, "-o", out}, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	// stderr line by line: the first lines say the capture runs.
	pr, pw := io.Pipe()
	lines := make(chan string, 100)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	stop := make(chan struct{})
	code := make(chan int, 1)
	go func() {
		code <- Run(context.Background(), o, tokens("ops-token"), pcapcmd.Env{Stdout: io.Discard, Stderr: pw, Stop: stop})
		pw.Close()
	}()
	var stderr []string
	for l := range lines {
		stderr = append(stderr, l)
		if strings.HasPrefix(l, "Not captured:") {
			break
		}
	}
	close(stop)
	for l := range lines {
		stderr = append(stderr, l)
	}
	all := strings.Join(stderr, "\n")
	if c := <-code; c != pcapcmd.ExitOK {
		t.Fatalf("exit %d:\n%s", c, all)
	}
	for _, want := range []string{
		"Capturing deployment cf, instance(s) router/0, into " + out,
		"Not captured: router/1: no agent connected",
		"1 packets", "ended: stopped on request",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("stderr lacks %q:\n%s", want, all)
		}
	}
	// The stream ended after the DELETE, which said where it went.
	select {
	case p := <-stopPath:
		if p != "/v1/bosh/deployments/cf/capture/0123456789abcdef" {
			t.Errorf("stopped at %q", p)
		}
	default:
		t.Error("the stream ended without a DELETE")
	}
	if data, err := os.ReadFile(out); err != nil || len(data) == 0 {
		t.Errorf("output: %v", err)
	}
}
