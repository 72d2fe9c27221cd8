package bpfbound

import (
	"regexp"
	"strings"
)

// The lexer below reads a filter as libpcap's scanner does (scanner.l of
// libpcap 1.10: flex, the longest match wins, the earlier rule on a tie,
// keywords case-sensitive), so that what is counted and refused here is
// what libpcap will parse. Where the two disagreed, `host ::1or host
// ::2` counted no operator here while libpcap read an address and `or`:
// an address of colons ends where a letter that is not hex begins.

// kind is what a token means to the bound: the operators it counts, and
// what decides whether a name is a host name (the qualifiers before it).
type kind int

const (
	kindAnd     kind = iota // and, &&
	kindOr                  // or, ||
	kindNot                 // not, !
	kindOpen                // (
	kindClose               // )
	kindProto               // a protocol qualifier: ip, tcp, ether, ...
	kindDir                 // a direction qualifier: src, dst, ...
	kindHost                // host
	kindNet                 // net
	kindPort                // port, portrange
	kindProtoQ              // proto, protochain
	kindGateway             // gateway
	kindName                // a name: ID in scanner.l
	kindLiteral             // a number or an address, or a part of one ('/', mask)
	kindOther               // anything else: it ends what came before
)

type token struct {
	kind kind
	text string
}

// keywords are scanner.l's keyword rules, by the token they return.
var keywords = map[string]kind{
	"and": kindAnd, "&&": kindAnd, "or": kindOr, "||": kindOr, "not": kindNot,
	"dst": kindDir, "src": kindDir, "address1": kindDir, "addr1": kindDir, "address2": kindDir, "addr2": kindDir,
	"address3": kindDir, "addr3": kindDir, "address4": kindDir, "addr4": kindDir, "ra": kindDir, "ta": kindDir,
	"host": kindHost, "net": kindNet, "port": kindPort, "portrange": kindPort,
	"proto": kindProtoQ, "protochain": kindProtoQ, "gateway": kindGateway,
	"mask": kindLiteral,
}

func init() {
	for _, w := range strings.Fields(`link ether ppp slip fddi tr wlan arp rarp ip sctp tcp udp icmp igmp igrp pim
		vrrp carp radio ip6 icmp6 ah esp atalk aarp decnet lat sca moprc mopdl iso esis es-is isis is-is l1 l2
		iih lsp snp csnp psnp clnp stp ipx netbeui`) {
		keywords[w] = kindProto
	}
	for _, w := range strings.Fields(`type subtype direction dir less greater byte broadcast multicast len length
		inbound outbound ifindex vlan mpls pppoed pppoes geneve lane llc metac bcc oam oamf4 oamf4ec oamf4sc sc
		ilmic vpi vci connectmsg metaconnect on ifname rset ruleset rnr rulenum srnr subrulenum reason action
		fisu lssu lsu msu hfisu hlssu hmsu sio opc dpc sls hsio hopc hdpc hsls`) {
		keywords[w] = kindOther
	}
	// Names of numbers (icmp-echo, tcp-syn, ...): scanner.l returns NUM.
	for _, w := range strings.Fields(`icmptype icmpcode icmp-echoreply icmp-unreach icmp-sourcequench
		icmp-redirect icmp-echo icmp-routeradvert icmp-routersolicit icmp-timxceed icmp-paramprob icmp-tstamp
		icmp-tstampreply icmp-ireq icmp-ireqreply icmp-maskreq icmp-maskreply icmp6type icmp6code
		icmp6-destinationunreach icmp6-packettoobig icmp6-timeexceeded icmp6-parameterproblem icmp6-echo
		icmp6-echoreply icmp6-multicastlistenerquery icmp6-multicastlistenerreportv1
		icmp6-multicastlistenerdone icmp6-routersolicit icmp6-routeradvert icmp6-neighborsolicit
		icmp6-neighboradvert icmp6-redirect icmp6-routerrenum icmp6-nodeinformationquery
		icmp6-nodeinformationresponse icmp6-ineighbordiscoverysolicit icmp6-ineighbordiscoveryadvert
		icmp6-multicastlistenerreportv2 icmp6-homeagentdiscoveryrequest icmp6-homeagentdiscoveryreply
		icmp6-mobileprefixsolicit icmp6-mobileprefixadvert icmp6-certpathsolicit icmp6-certpathadvert
		icmp6-multicastrouteradvert icmp6-multicastroutersolicit icmp6-multicastrouterterm tcpflags tcp-fin
		tcp-syn tcp-rst tcp-push tcp-ack tcp-urg tcp-ece tcp-cwr`) {
		numberNames[w] = true
	}
}

// numberNames come after the address rules in scanner.l: on a tie with
// one of them, the address wins.
var numberNames = map[string]bool{}

// rule is a pattern rule of scanner.l after the keywords.
type rule struct {
	re   *regexp.Regexp
	kind kind
	// may says cheaply whether the rule can match at the start of expr:
	// most cannot, and a regexp costs more than a token.
	may func(expr string) bool
}

// startsWith makes a rule's may: the first byte is one of these.
func startsWith(chars string) func(string) bool {
	return func(expr string) bool { return strings.IndexByte(chars, expr[0]) >= 0 }
}

// near says whether one of chars is among the first n bytes of expr.
func near(expr string, n int, chars string) bool {
	return strings.IndexAny(expr[:min(n, len(expr))], chars) >= 0
}

const (
	digits    = "0123456789"
	hexDigits = digits + "abcdefABCDEF"
	alnum     = digits + "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)

// The pattern rules of scanner.l after the keywords, in its order, each
// with its definitions spelled out (N, B, B2, W, the V6 forms, MAC).
var rules = func() []rule {
	const (
		n  = `([0-9]+|0[Xx][0-9A-Fa-f]+)`
		b  = `[0-9A-Fa-f][0-9A-Fa-f]?`
		b2 = `[0-9A-Fa-f][0-9A-Fa-f][0-9A-Fa-f][0-9A-Fa-f]`
		w  = `[0-9A-Fa-f][0-9A-Fa-f]?[0-9A-Fa-f]?[0-9A-Fa-f]?`
	)
	ipv4 := n + `\.` + n + `\.` + n + `\.` + n
	groups := func(k int) string { return strings.TrimSuffix(strings.Repeat(w+":", k), ":") }
	// V680, V670..V600: eight groups, or fewer with :: among them; then
	// V6604, V6504..V6004: six groups, or fewer with ::, and an IPv4
	// address as the last two.
	v6 := []string{groups(8)}
	for k := 7; k >= 0; k-- {
		for j := 0; j <= k; j++ {
			v6 = append(v6, groups(j)+"::"+groups(k-j))
		}
	}
	v6 = append(v6, groups(6)+":"+ipv4)
	for k := 5; k >= 0; k-- {
		for j := 0; j <= k; j++ {
			after := groups(k - j)
			if after != "" {
				after += ":"
			}
			v6 = append(v6, groups(j)+"::"+after+ipv4)
		}
	}
	mac := strings.Join([]string{
		b + ":" + b + ":" + b + ":" + b + ":" + b + ":" + b,
		b + `-` + b + `-` + b + `-` + b + `-` + b + `-` + b,
		b + `\.` + b + `\.` + b + `\.` + b + `\.` + b + `\.` + b,
		b2 + `\.` + b2 + `\.` + b2,
		b2 + b2 + b2,
	}, "|")
	// An address of colons has one among its first five bytes (W: or
	// ::); a MAC address a separator among them, or twelve hex digits.
	colon := func(e string) bool { return near(e, 5, ":") }
	macLike := func(e string) bool {
		return near(e, 5, ":-.") || len(e) >= 12 && strings.Trim(e[:12], hexDigits) == ""
	}
	var rules []rule
	for _, r := range []struct {
		pattern string
		kind    kind
		may     func(string) bool
	}{
		{`[+*/%:!<>()&|^=[\]-]`, kindOther, startsWith("+*/%:!<>()&|^=[]-")}, // single characters; refined in lex
		{`>=|<=|!=|==|<<|>>`, kindOther, startsWith("<>!=")},
		{`\$` + b, kindLiteral, startsWith("$")},                                         // AID
		{mac, kindLiteral, macLike},                                                      // EID
		{n, kindLiteral, startsWith(digits)},                                             // NUM
		{n + `\.` + n + `(\.` + n + `(\.` + n + `)?)?`, kindLiteral, startsWith(digits)}, // HID
		{strings.Join(v6, "|"), kindLiteral, colon},                                      // HID6
		{b + `:+(` + b + `:+)+`, kindLiteral, colon},                                     // a bogus Ethernet address: an error
		{`[A-Za-z0-9]([-_.A-Za-z0-9]*[.A-Za-z0-9])?`, kindName, startsWith(alnum)},       // ID
		{`\\[^ !()\n\t]+`, kindName, startsWith("\\")},                                   // ID, the backslash dropped
	} {
		// Leftmost-longest, as flex; \A: at the start of the text only
		// (a POSIX ^ would also match after a newline).
		re := regexp.MustCompile(`\A(?:` + r.pattern + `)`)
		re.Longest()
		rules = append(rules, rule{re, r.kind, r.may})
	}
	return rules
}()

// lex splits expr into libpcap's tokens. libpcap gets the filter as a C
// string: it ends at the first NUL. A character no rule takes is a token
// of its own (libpcap's LEX_ERROR), and the parse fails there.
func lex(expr string) []token {
	if i := strings.IndexByte(expr, 0); i >= 0 {
		expr = expr[:i]
	}
	var toks []token
	for len(expr) > 0 {
		if strings.IndexByte(" \r\n\t", expr[0]) >= 0 {
			expr = expr[1:]
			continue
		}
		t, n := next(expr)
		toks = append(toks, t)
		expr = expr[n:]
	}
	return toks
}

// next is the token expr starts with and its length: the longest match
// of any rule, the earlier rule on a tie.
func next(expr string) (token, int) {
	best, bestKind, bestNumberName := 0, kindOther, false
	// Keywords come first in scanner.l, and none is longer than 11.
	for n := min(len(expr), 11); n > 0; n-- {
		if k, ok := keywords[expr[:n]]; ok {
			best, bestKind = n, k
			break
		}
	}
	for i, r := range rules {
		if !r.may(expr) {
			continue
		}
		m := r.re.FindStringIndex(expr)
		if m == nil || m[1] <= best {
			continue
		}
		best, bestKind = m[1], r.kind
		// The number names come just before the ID rule.
		if i == len(rules)-2 && numberNames[expr[:best]] {
			bestNumberName = true
		}
	}
	if best == 0 {
		return token{kindOther, expr[:1]}, 1
	}
	text := expr[:best]
	switch {
	case bestNumberName:
		bestKind = kindLiteral
	case text == "(":
		bestKind = kindOpen
	case text == ")":
		bestKind = kindClose
	case text == "!":
		bestKind = kindNot
	case text == "/":
		bestKind = kindLiteral
	}
	return token{bestKind, text}, best
}
