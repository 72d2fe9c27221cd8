package pcapcmd

import (
	"strings"
	"testing"
	"unicode"

	"github.com/cloudfoundry/pcap-server-release/test/fuzzcorpus"
)

var unknownCountsSeeds = []string{
	"0: its agent did not answer the stop within 15s; 2: its agent closed the stream without sending them",
	"",
	"no index here",
	"1:x;;; 2: y; \x1b[2J: z",
}

// FuzzUnknownCounts: whatever the server puts in Pcap-Counts-Unknown, the
// summary's words come out one per non-empty part, in the summary's shape,
// without control characters.
func FuzzUnknownCounts(f *testing.F) {
	for _, s := range unknownCountsSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, trailer string) {
		parts := unknownCounts(trailer)
		// A control character before a space may make "; " of ";".
		if len(parts) > strings.Count(trailer, ";")+1 {
			t.Fatalf("%d parts from %q", len(parts), trailer)
		}
		for _, p := range parts {
			if !strings.HasPrefix(p, "instance ") && !strings.HasPrefix(p, "counts unknown: ") {
				t.Fatalf("part %q", p)
			}
			if strings.IndexFunc(p, unicode.IsControl) >= 0 {
				t.Fatalf("control character in %q", p)
			}
		}
		if got := dropTotal(trailer); got != trailer && got != "≥"+strings.TrimPrefix(trailer, ">=") {
			t.Fatalf("dropTotal(%q) = %q", trailer, got)
		}
	})
}

func TestSeedCorpus(t *testing.T) {
	seeds := make([]any, len(unknownCountsSeeds))
	for i, s := range unknownCountsSeeds {
		seeds[i] = s
	}
	fuzzcorpus.Check(t, "FuzzUnknownCounts", seeds...)
}
