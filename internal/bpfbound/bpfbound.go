// Package bpfbound bounds the complexity of a BPF filter expression before
// anything compiles it. libpcap's optimizer is far worse than linear in the
// number of alternatives: `port 1||port 2||…||port 510` (4,990 characters)
// takes about 27 s of CPU and 110 MB to compile, while the filters people
// write have a handful of and/or. The API refuses a filter over the bound
// with a 400 before any agent is asked; the agent's compile has its own
// time and memory budget for whatever gets through (an older API).
//
// The count is lexical and needs no libpcap, so the API (pure Go) can
// apply it: every `and`, `or`, `&&` and `||` outside a word counts once.
// Bitwise `&` and `|` inside packet accessors (tcp[13] & 2 != 0) do not.
package bpfbound

import (
	"fmt"
	"strings"
)

// MaxOperators is the most and/or operators a filter may have.
//
// Measured with libpcap 1.10.3 on a 2-core VM (optimizer on, as the agent
// compiles): at 64 operators the worst primitive found, portrange, takes
// 0.25 s and 7.5 MB; port 0.05 s; host and net 0.02 s. Time grows roughly
// with the cube of the count (portrange: 1.1 s at 100, 18 s at 200). The
// examples in pcap-filter(7) and tcpdump(1) use at most three.
const MaxOperators = 64

// TooComplexError is a filter over the bound.
type TooComplexError struct {
	Operators int
}

func (e *TooComplexError) Error() string {
	return fmt.Sprintf("filter has %d and/or operators, more than the %d allowed: libpcap's compile time grows steeply with them; use ranges (portrange, net) or fewer alternatives",
		e.Operators, MaxOperators)
}

// Check returns a *TooComplexError if expr has more than MaxOperators
// and/or operators. It does not judge the syntax: libpcap does that.
func Check(expr string) error {
	if n := Operators(expr); n > MaxOperators {
		return &TooComplexError{Operators: n}
	}
	return nil
}

// Operators counts the logical and/or operators of expr: `&&` and `||`
// wherever they are, and the words `and` and `or` (any case) standing
// alone. Words are what libpcap's scanner would read as one name or
// number: letters, digits and `.-_:\/` (so "or.example.com" is a host).
func Operators(expr string) int {
	n := strings.Count(expr, "&&") + strings.Count(expr, "||")
	word := func(r rune) bool {
		return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(".-_:\\/", r)
	}
	for _, w := range strings.FieldsFunc(expr, func(r rune) bool { return !word(r) }) {
		if strings.EqualFold(w, "and") || strings.EqualFold(w, "or") {
			n++
		}
	}
	return n
}
