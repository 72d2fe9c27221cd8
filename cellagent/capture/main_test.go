package capture

import (
	"os"
	"testing"

	"github.com/cloudfoundry/pcap-server-release/cellagent/bpfcompile"
)

// TestMain lets this test binary be the filter compiler's child process.
func TestMain(m *testing.M) {
	bpfcompile.Main()
	os.Exit(m.Run())
}
