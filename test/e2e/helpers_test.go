package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cloudfoundry/pcap-server-release/cli/pcapstream"
	"github.com/cloudfoundry/pcap-server-release/internal/configfile"
	"github.com/cloudfoundry/pcap-server-release/test/netnstest"
)

func netipAppPort(port uint16) netip.AddrPort { return netip.AddrPortFrom(netnstest.AppIP, port) }

func configDuration(d time.Duration) configfile.Duration { return configfile.Duration(d) }

// readPackets reads the body until n packets have arrived and returns the
// bytes read so far (whole records). It fails after 20 seconds.
func readPackets(t *testing.T, resp *http.Response, n uint64) []byte {
	t.Helper()
	var buf bytes.Buffer
	c := pcapstream.NewCopier(&buf, resp.Body)
	c.StopAfter = n
	done := make(chan error, 1)
	go func() { done <- c.Copy() }()
	select {
	case err := <-done:
		if got := c.Progress().Packets; got != n {
			t.Fatalf("stream ended after %d of %d packets: %v", got, n, err)
		}
	case <-time.After(20 * time.Second):
		resp.Body.Close()
		<-done
		t.Fatalf("only %d of %d packets within 20s", c.Progress().Packets, n)
	}
	return buf.Bytes()
}

// assertAudit checks the last audit line.
func assertAudit(t *testing.T, api *apiProc, event, endReason string) {
	t.Helper()
	data, err := os.ReadFile(api.audit)
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	var last map[string]any
	for sc.Scan() {
		if err := json.Unmarshal(sc.Bytes(), &last); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
	}
	if last["event"] != event || last["end_reason"] != endReason || last["user_id"] != "dev" || last["app_guid"] != appGUID {
		t.Fatalf("last audit record %v", last)
	}
	if strings.Contains(string(data), devToken) {
		t.Fatal("the audit log contains the token")
	}
}
