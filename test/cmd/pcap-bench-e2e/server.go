package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"syscall"
	"time"

	"github.com/cloudfoundry/pcap-server-release/test/testpki"
)

const (
	benchAppName = "bench-app"
	benchAppGUID = "0b3e7c2e-5e1f-4a6b-9c0d-be7c4be7c4e2"
)

// startServers writes a throwaway CA, starts pcap-server-api and
// pcap-server in dev mode with the app namespace as the app's only
// instance, and waits for the agent's tunnel. Both keep their default
// limits, except the API's byte limit, which the TCP run would reach, and
// the agent's ring, which is the benchmark's.
func (b *bench) startServers(ctx context.Context) error {
	dir := b.cfg.work
	ca, err := testpki.NewCA("pcap bench CA")
	if err != nil {
		return err
	}
	caFile, err := ca.WriteFile(dir, "ca")
	if err != nil {
		return err
	}
	srv, err := ca.Server("pcap-server-api.service.cf.internal")
	if err != nil {
		return err
	}
	apiCert, apiKey, err := srv.WriteFiles(dir, "api")
	if err != nil {
		return err
	}
	cl, err := ca.Client("pcap-server agent")
	if err != nil {
		return err
	}
	agentCert, agentKey, err := cl.WriteFiles(dir, "agent")
	if err != nil {
		return err
	}
	ports, err := freePorts(4)
	if err != nil {
		return err
	}
	secret := make([]byte, 16)
	_, _ = rand.Read(secret)
	b.token = "bench-token-" + hex.EncodeToString(secret)
	b.apiURL = fmt.Sprintf("http://127.0.0.1:%d", ports[0])

	apiYAML := fmt.Sprintf(`id: pcap-server-api/bench
listen: {address: "127.0.0.1:%d"}
tunnel:
  address: "127.0.0.1:%d"
  tls: {certificate: %s, private_key: %s, client_ca: %s}
metrics: {address: "127.0.0.1:%d"}
audit_log: %s
drain_timeout: 2s
limits: {max_bytes: 1024GiB}
dev:
  token: %s
  targets: [{app_guid: %s, app_name: %s, index: 0, cell_ip: 127.0.0.1}]
`, ports[0], ports[1], apiCert, apiKey, caFile, ports[2], filepath.Join(dir, "audit.log"), b.token, benchAppGUID, benchAppName)
	agentYAML := fmt.Sprintf(`id: bench-cell
cell_ips: ["127.0.0.1"]
api:
  addresses: ["127.0.0.1:%d"]
  tls: {certificate: %s, private_key: %s, ca: %s, server_name: pcap-server-api.service.cf.internal}
metrics: {address: "127.0.0.1:%d"}
limits: {buffer_bytes: %dMiB}
dev:
  netns: {"%s/0": /run/netns/%s}
`, ports[1], agentCert, agentKey, caFile, ports[3], b.cfg.ringMiB, benchAppGUID, b.topo.app)
	apiConf := filepath.Join(dir, "api.yml")
	agentConf := filepath.Join(dir, "agent.yml")
	if err := os.WriteFile(apiConf, []byte(apiYAML), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(agentConf, []byte(agentYAML), 0o600); err != nil {
		return err
	}

	if b.api, err = b.startDaemon("pcap-server-api", apiConf, "api.log"); err != nil {
		return err
	}
	if b.agent, err = b.startDaemon("pcap-server", agentConf, "agent.log"); err != nil {
		return err
	}
	_, err = b.agent.waitFor(ctx, regexp.MustCompile(`"msg":"tunnel up"`), 30*time.Second)
	return err
}

// startDaemon starts one of the two servers with its log in the work
// directory.
func (b *bench) startDaemon(name, conf, logName string) (*proc, error) {
	log, err := os.Create(filepath.Join(b.cfg.work, logName))
	if err != nil {
		return nil, err
	}
	p, err := startProc(procSpec{name: name, log: log, args: []string{filepath.Join(b.cfg.bin, name), "-config", conf}})
	if err != nil {
		log.Close()
		return nil, err
	}
	go func() {
		<-p.done
		p.out.wait()
		log.Close()
	}()
	return p, nil
}

// stopServers ends the agent, then the API.
func (b *bench) stopServers() {
	for _, p := range []*proc{b.agent, b.api} {
		if p != nil {
			_ = p.stop(syscall.SIGTERM, 10*time.Second)
		}
	}
}

// freePorts finds n free loopback ports. They are free when this returns;
// nothing else on the machine is expected to grab them in the second
// before the servers bind them.
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
