package pcapstream

import (
	"testing"

	"github.com/cloudfoundry/pcap-server-release/test/fuzzcorpus"
)

func TestSeedCorpus(t *testing.T) {
	fuzzcorpus.Check(t, "FuzzCopy", pcapStream(t, 3), pcapngStream(t, 3), []byte{0x0a, 0x0d, 0x0d, 0x0a, 0x1c, 0, 0, 0, 0x4d, 0x3c, 0x2b, 0x1a})
}
