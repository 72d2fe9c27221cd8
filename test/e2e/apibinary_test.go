package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cloudfoundry/pcap-server-release/proxy/apiconfig"
)

// apiBin is pcap-server-api run as its own process from its config file,
// as BOSH runs it.
type apiBin struct {
	url    string // http(s)://127.0.0.1:PORT
	tunnel string
	audit  string
	logs   *syncBuffer
	cmd    *exec.Cmd
}

// startAPIBinary runs the API binary with the test configuration and
// returns once it has logged that it listens (on the ports the kernel
// chose). It is stopped with SIGTERM when the test ends.
func startAPIBinary(t testing.TB, p *pki, targets []apiconfig.DevTarget, mutate func(*apiconfig.Config)) *apiBin {
	t.Helper()
	cfg := apiTestConfig(t, p, targets, mutate)
	a := &apiBin{audit: cfg.AuditLog, logs: &syncBuffer{}}
	a.cmd = exec.Command(binary(t, "pcap-server-api"), "-config", writeYAML(t, t.TempDir(), "api.yml", cfg))
	a.cmd.Stdout = a.logs
	stderr, err := a.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	started := make(chan map[string]any, 1)
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Bytes()
			_, _ = a.logs.Write(append(line, '\n'))
			var entry map[string]any
			if json.Unmarshal(line, &entry) == nil && entry["msg"] == "started" {
				started <- entry
			}
		}
		// Every read is done: now Wait may close the pipe.
		_ = a.cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = a.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(time.Minute):
			t.Error("the API binary did not stop within a minute of SIGTERM: killed")
			_ = a.cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("API log:\n%s", a.logs.String())
		}
	})
	select {
	case entry := <-started:
		scheme := "http"
		if cfg.Listen.TLS != nil {
			scheme = "https"
		}
		a.url = fmt.Sprintf("%s://%s", scheme, entry["listen"])
		a.tunnel = fmt.Sprint(entry["tunnel"])
	case <-exited:
		t.Fatalf("the API binary exited:\n%s", a.logs.String())
	case <-time.After(20 * time.Second):
		t.Fatalf("the API binary did not start within 20s:\n%s", a.logs.String())
	}
	return a
}

// port is the API's HTTP port.
func (a *apiBin) port(t testing.TB) int {
	t.Helper()
	u, err := url.Parse(a.url)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(u.Port())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// waitAgent polls the API's agent list until an agent claims cellIP.
func (a *apiBin) waitAgent(t testing.TB, client *http.Client, cellIP string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, a.url+"/v1/agents", nil)
		req.Header.Set("Authorization", "bearer "+devToken)
		var list struct {
			Agents []struct {
				CellIPs []string `json:"cell_ips"`
			} `json:"agents"`
		}
		if resp, err := client.Do(req); err == nil {
			_ = json.NewDecoder(resp.Body).Decode(&list)
			resp.Body.Close()
		}
		for _, ag := range list.Agents {
			if slices.Contains(ag.CellIPs, cellIP) {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no agent for %s registered with %s within 20s", cellIP, a.url)
		case <-tick.C:
		}
	}
}

// auditLines are the API's audit records so far.
func (a *apiBin) auditLines(t testing.TB) []map[string]any {
	t.Helper()
	data, err := os.ReadFile(a.audit)
	if err != nil {
		t.Fatal(err)
	}
	var recs []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		recs = append(recs, rec)
	}
	return recs
}

// directTransport reaches an API's listener itself, verifying its
// certificate for serverName against caPEM; HTTP/2 only when asked.
func directTransport(caPEM []byte, serverName string, http2 bool) *http.Transport {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: serverName}, ForceAttemptHTTP2: http2}
	if !http2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	return tr
}

// idleProxy stands for a load balancer in front of the gorouters that
// closes a connection on which no byte moved for idle (AWS ELB: 60 s).
type idleProxy struct {
	l      net.Listener
	target string
	idle   time.Duration
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  []net.Conn
}

func startIdleProxy(t testing.TB, target string, idle time.Duration) *idleProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &idleProxy{l: l, target: target, idle: idle}
	p.wg.Go(p.serve)
	t.Cleanup(func() {
		l.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *idleProxy) addr() string { return p.l.Addr().String() }

func (p *idleProxy) serve() {
	for {
		in, err := p.l.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", p.target)
		if err != nil {
			in.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, in, out)
		p.mu.Unlock()
		p.wg.Go(func() { p.relay(in, out) })
	}
}

// relay copies both ways and closes both sides once no byte moved either
// way for idle, or either side is done. The idle clock starts with the
// upstream's first byte: the timeout at stake is a quiet stream's, and a
// capture's start may take seconds on a busy machine.
func (p *idleProxy) relay(in, out net.Conn) {
	moved := make(chan struct{}, 1)
	answered := make(chan struct{})
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn, first chan struct{}) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				if first != nil {
					close(first)
					first = nil
				}
				select {
				case moved <- struct{}{}:
				default:
				}
				if _, werr := dst.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		done <- struct{}{}
	}
	go pipe(out, in, nil)
	go pipe(in, out, answered)
	running := 2
	var idle <-chan time.Time
	timer := time.NewTimer(p.idle)
	defer timer.Stop()
wait:
	for {
		select {
		case <-answered:
			answered, idle = nil, timer.C
			timer.Reset(p.idle)
		case <-moved:
			timer.Reset(p.idle)
		case <-idle:
			break wait
		case <-done:
			running--
			break wait
		}
	}
	in.Close()
	out.Close()
	// Both copies end once both connections are closed.
	for ; running > 0; running-- {
		<-done
	}
}
