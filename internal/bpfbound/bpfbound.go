// Package bpfbound bounds the complexity of a BPF filter expression before
// anything compiles it, and refuses host names. libpcap's optimizer is far
// worse than linear in the number of alternatives: `port 1||port 2||…||port
// 510` (4,990 characters) takes about 27 s of CPU and 110 MB to compile,
// while the filters people write have a handful of and/or. A host name is
// resolved by libpcap while it compiles, in the container's network
// namespace, through whatever DNS answers there, and costs one test per
// address: a name of 400 addresses took 2.8 s of CPU and no operator.
// The API refuses a filter over the bound or with a host name with a 400
// before any agent is asked; the agent refuses it too (an older API), and
// its compile has its own time and memory budget for whatever gets
// through.
//
// The check reads the filter with a lexer that follows libpcap's scanner
// (lex.go), so the API (pure Go) can apply it: every `and`, `or`, `&&` and
// `||` token counts once, also where it follows an address without a
// space (`host ::1or host ::2`); bitwise `&` and `|` inside packet
// accessors (tcp[13] & 2 != 0) do not.
package bpfbound

import (
	"fmt"
	"strings"
)

// MaxOperators is the most and/or operators a filter may have.
//
// Measured with libpcap 1.10.3 on a 2-core VM (optimizer on, as the agent
// compiles): at 64 operators the worst primitive found, portrange, takes
// 0.25-0.3 s and 7.5-12 MB; port 0.05 s; host and net 0.02 s. Time grows roughly
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

// HostNameError is a filter that names a host instead of its address.
type HostNameError struct {
	Name string
}

func (e *HostNameError) Error() string {
	return fmt.Sprintf("filter names the host %q: host names are refused, as the cell would resolve them through DNS inside the container's network, where one name can stand for hundreds of addresses; write the addresses (host 192.0.2.1 or host 192.0.2.2)", e.Name)
}

// Check returns a *TooComplexError if expr has more than MaxOperators
// and/or operators, or a *HostNameError if libpcap would resolve a name
// in it as a host. It does not judge the syntax: libpcap does that.
func Check(expr string) error {
	toks := lex(expr)
	if n := operators(toks); n > MaxOperators {
		return &TooComplexError{Operators: n}
	}
	if names := hostNames(toks); len(names) > 0 {
		return &HostNameError{Name: names[0]}
	}
	return nil
}

// Operators counts the and/or operators of expr as libpcap's scanner
// reads them: `and`, `or`, `&&` and `||` tokens (keywords are
// case-sensitive: `AND` is a name).
func Operators(expr string) int { return operators(lex(expr)) }

func operators(toks []token) int {
	n := 0
	for _, t := range toks {
		if t.kind == kindAnd || t.kind == kindOr {
			n++
		}
	}
	return n
}

// HostNames lists the names in expr that libpcap would resolve as hosts
// (through DNS, or /etc/ethers for Ethernet), in their order.
func HostNames(expr string) []string { return hostNames(lex(expr)) }

// qual is the qualifier libpcap gives a name: what precedes it, as its
// parser passes it on (grammar.y, $<blk>0 of an id): the head before it
// (`ip src host`), or through and, or, not and parentheses the qualifier
// of the term before them (`host a or b`: b is a host too).
type qual struct {
	// ok is false after a term that gives no qualifier (a protocol alone,
	// a comparison, `vlan 100`, ...) and at the start: a name there is a
	// syntax error, never looked up.
	ok bool
	// addr is kindHost, kindNet, kindPort, kindProtoQ or kindGateway, or
	// kindDir when the head gave none (libpcap's Q_DEFAULT: a host).
	addr kind
}

// resolvesNames says whether libpcap looks a name up as a host here.
func (q qual) resolvesNames() bool {
	return q.ok && (q.addr == kindHost || q.addr == kindGateway || q.addr == kindDir)
}

func hostNames(toks []token) []string {
	var names []string
	var cur qual // what a name here would get
	var outer []qual
	for i := 0; i < len(toks); i++ {
		switch t := toks[i]; t.kind {
		case kindProto, kindDir, kindHost, kindNet, kindPort, kindProtoQ, kindGateway:
			q, n := head(toks[i:])
			cur = q
			i += n - 1
		case kindName:
			if cur.resolvesNames() {
				names = append(names, strings.TrimPrefix(t.text, "\\"))
			}
		case kindOpen:
			outer = append(outer, cur)
		case kindClose:
			cur = qual{}
			if len(outer) > 0 {
				cur, outer = outer[len(outer)-1], outer[:len(outer)-1]
			}
		case kindAnd, kindOr, kindNot, kindLiteral:
			// An operator passes the qualifier on; an address or number
			// keeps it (`host 10.0.0.1 or b`).
		default:
			cur = qual{}
		}
	}
	return names
}

// head reads libpcap's qualifiers at the start of toks: [protocol]
// [direction] [host|net|port|portrange], or a protocol with proto,
// protochain or gateway. It returns the qualifier and the tokens it took.
// A protocol alone is a term of its own (tcp, or tcp[13] & 2 != 0).
func head(toks []token) (qual, int) {
	n := 0
	if toks[0].kind == kindProto {
		n++
	}
	dir := n < len(toks) && toks[n].kind == kindDir
	if dir {
		n++
		// `src or dst`, `dst and src`: one direction, not an operator.
		if n+1 < len(toks) && (toks[n].kind == kindAnd || toks[n].kind == kindOr) && toks[n+1].kind == kindDir {
			n += 2
		}
	}
	addr := kindDir
	if n < len(toks) {
		switch k := toks[n].kind; {
		case k == kindHost || k == kindNet || k == kindPort, !dir && (k == kindProtoQ || k == kindGateway):
			addr = k
			n++
		}
	}
	if n == 1 && toks[0].kind == kindProto {
		return qual{}, 1
	}
	return qual{ok: true, addr: addr}, n
}
