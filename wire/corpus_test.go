package wire

import (
	"bytes"
	"testing"

	"github.com/cloudfoundry/pcap-server-release/test/fuzzcorpus"
)

// seedFrames are the protocol's own frames: one of every message, a packet
// batch, a device's packet batch, an unknown type and an oversized header,
// each as a whole stream.
func seedFrames() [][]byte {
	var seeds [][]byte
	for _, m := range allMessages() {
		var s bytes.Buffer
		_ = NewWriter(&s).WriteMessage(m)
		seeds = append(seeds, s.Bytes())
	}
	var b Batch
	b.Append(1700000000000000000, 60, make([]byte, 60))
	b.Append(1700000000000000001, 1514, make([]byte, 96))
	seeds = append(seeds, bytes.Clone(b.Frame()))
	db := NewDeviceBatch(1, 0)
	db.Append(1700000000000000002, 60, make([]byte, 60))
	seeds = append(seeds, bytes.Clone(db.Frame()))
	var s bytes.Buffer
	_ = NewWriter(&s).WriteFrame(Type(99), []byte("from the future"))
	seeds = append(seeds, s.Bytes())
	seeds = append(seeds, []byte{byte(TypePackets), 0xff, 0xff, 0xff, 0xff})
	return seeds
}

// TestSeedCorpus keeps testdata/fuzz in step with the protocol: run with
// -update-corpus after changing a message.
func TestSeedCorpus(t *testing.T) {
	var reader, packets, devicePackets []any
	for _, p := range devicePacketsSeeds() {
		devicePackets = append(devicePackets, p)
	}
	for _, f := range seedFrames() {
		reader = append(reader, f)
		if len(f) > HeaderSize && Type(f[0]) == TypePackets {
			packets = append(packets, f[HeaderSize:])
		}
	}
	fuzzcorpus.Check(t, "FuzzReader", reader...)
	fuzzcorpus.Check(t, "FuzzDecodePackets", packets...)
	fuzzcorpus.Check(t, "FuzzDecodeDevicePackets", devicePackets...)
	var discard []any
	for _, d := range discardSeeds() {
		discard = append(discard, d)
	}
	fuzzcorpus.Check(t, "FuzzDiscardPackets", discard...)
}
