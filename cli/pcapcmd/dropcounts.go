package pcapcmd

import (
	"fmt"
	"strings"
	"unicode"
)

// dropTotal renders the Pcap-Dropped trailer: a number, or ">=N" when an
// instance's final counters never reached the API, so N is what is known.
func dropTotal(trailer string) string {
	if n, ok := strings.CutPrefix(trailer, ">="); ok {
		return "≥" + n
	}
	return trailer
}

// unknownCounts renders the Pcap-Counts-Unknown trailer ("0: why; 2:
// why") as the summary's words: "instance 0's counts unknown: why". The
// server's text reaches a terminal: control characters become spaces.
func unknownCounts(trailer string) []string {
	trailer = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, trailer)
	var out []string
	for part := range strings.SplitSeq(trailer, "; ") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		index, why, ok := strings.Cut(part, ": ")
		if !ok {
			out = append(out, "counts unknown: "+part)
			continue
		}
		out = append(out, fmt.Sprintf("instance %s's counts unknown: %s", index, why))
	}
	return out
}
