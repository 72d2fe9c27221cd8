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
	"github.com/cloudfoundry/pcap-server-release/internal/netnstest"
)

func netipAppPort(port uint16) netip.AddrPort { return netip.AddrPortFrom(netnstest.AppIP, port) }

func configDuration(d time.Duration) configfile.Duration { return configfile.Duration(d) }

// readPackets reads the body until n packets have arrived and returns the
// bytes read so far (whole records). It fails after 20 seconds.
func readPackets(t *testing.T, resp *http.Response, n uint64) []byte {
	t.Helper()
	var buf bytes.Buffer
	c := pcapstream.NewCopier(&buf, resp.Body)
	reached := make(chan struct{})
	c.OnRecord = func(p pcapstream.Progress) {
		if p.Packets == n {
			close(reached)
			panic(stopCopy{})
		}
	}
	done := make(chan error, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				if _, ok := r.(stopCopy); !ok {
					panic(r)
				}
				done <- nil
			}
		}()
		done <- c.Copy()
	}()
	select {
	case <-reached:
		<-done
	case err := <-done:
		t.Fatalf("stream ended after %d of %d packets: %v", c.Progress().Packets, n, err)
	case <-time.After(20 * time.Second):
		t.Fatalf("only %d of %d packets within 20s", c.Progress().Packets, n)
	}
	return buf.Bytes()
}

type stopCopy struct{}

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
