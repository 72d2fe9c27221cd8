package bpfbound

import (
	"fmt"
	"math/rand/v2"
	"os"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcap"
	"golang.org/x/sys/unix"

	"github.com/cloudfoundry/pcap-server-release/test/netnstest"
)

// libpcapCompiler compiles with libpcap (a dead Ethernet handle) on a
// thread in a network namespace of its own without any interface up: a
// name libpcap looks up in DNS fails at once, and no query leaves the
// machine.
type libpcapCompiler struct {
	reqs chan compileReq
	done chan struct{}
}

type compileReq struct {
	expr  string
	reply chan compiled
}

type compiled struct {
	insns []pcap.BPFInstruction
	err   error
}

func newLibpcapCompiler(tb testing.TB) *libpcapCompiler {
	tb.Helper()
	netnstest.RequireRoot(tb)
	c := &libpcapCompiler{reqs: make(chan compileReq), done: make(chan struct{})}
	ready := make(chan error, 1)
	go func() {
		defer close(c.done)
		// Never unlocked: the thread ends with the goroutine, and its
		// namespace with it.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			ready <- fmt.Errorf("a network namespace for the compiling thread: %w", err)
			return
		}
		ready <- nil
		for r := range c.reqs {
			insns, err := pcap.CompileBPFFilter(layers.LinkTypeEthernet, 65535, r.expr)
			r.reply <- compiled{insns, err}
		}
	}()
	if err := <-ready; err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		close(c.reqs)
		<-c.done
	})
	return c
}

func (c *libpcapCompiler) compile(expr string) compiled {
	reply := make(chan compiled, 1)
	c.reqs <- compileReq{expr, reply}
	return <-reply
}

// hostLookup is libpcap's error for a host name it could not resolve.
var hostLookup = regexp.MustCompile(`unknown (ether |FDDI |token ring |802\.11 |Fibre Channel )?host '([^']*)'`)

// hostsFile lists the names /etc/hosts resolves: libpcap compiles those.
func hostsFile(tb testing.TB) map[string]bool {
	data, err := os.ReadFile("/etc/hosts")
	if err != nil && !os.IsNotExist(err) {
		tb.Fatal(err)
	}
	names := map[string]bool{}
	for line := range strings.Lines(string(data)) {
		line, _, _ = strings.Cut(line, "#")
		if f := strings.Fields(line); len(f) > 1 {
			for _, n := range f[1:] {
				names[n] = true
			}
		}
	}
	return names
}

// agreesWithLibpcap checks what the bound reads in expr against what
// libpcap makes of it:
//   - the tokens: expr with its tokens spaced apart compiles to the same
//     program as expr itself, or fails as well, so the operators counted
//     are libpcap's;
//   - the host names: a name libpcap looks up as a host is refused, and
//     a name refused is one libpcap looks up (not a port, a network or a
//     protocol of the same spelling).
//
// It reports whether libpcap compiled expr, and whether it looked a host
// up.
func agreesWithLibpcap(t *testing.T, c *libpcapCompiler, hosts map[string]bool, expr string) (ok, lookedUp bool) {
	t.Helper()
	toks := lex(expr)
	texts := make([]string, len(toks))
	for i, tok := range toks {
		texts[i] = tok.text
	}
	got, spaced := c.compile(expr), c.compile(strings.Join(texts, " "))
	if (got.err == nil) != (spaced.err == nil) || !slices.Equal(got.insns, spaced.insns) {
		t.Errorf("%q: libpcap reads other tokens than %q: %v / spaced %v", expr, texts, got.err, spaced.err)
	}
	names := hostNames(toks)
	if got.err != nil {
		m := hostLookup.FindStringSubmatch(got.err.Error())
		lookedUp = m != nil
		if lookedUp && len(names) == 0 {
			t.Errorf("%q: libpcap looked up %q as a host; the bound lets it through", expr, m[2])
		}
	}
	if len(names) == 0 {
		return got.err == nil, lookedUp
	}
	// libpcap names what it failed on; where the name is spelt once, it
	// is the one refused.
	spelt := 0
	for _, tok := range toks {
		if tok.kind == kindName && strings.TrimPrefix(tok.text, "\\") == names[0] {
			spelt++
		}
	}
	switch {
	case got.err == nil && !hosts[names[0]]:
		t.Errorf("%q: refused as naming the host %q, which libpcap compiled without", expr, names[0])
	case got.err != nil && spelt == 1 && strings.Contains(got.err.Error(), "'"+names[0]+"'") && !hostLookup.MatchString(got.err.Error()):
		t.Errorf("%q: refused as naming the host %q, which libpcap reads as something else: %v", expr, names[0], got.err)
	}
	return got.err == nil, lookedUp || hosts[names[0]]
}

// bypasses are filters of the issue and their kin: within the bound as
// it counted before, beyond it (or naming hosts) as libpcap reads them.
var bypasses = []string{
	"host ::1or host ::2or host ::3",
	"host 1::2and port 3",
	"ether host 00:11:22:33:44:55or ether host 00:11:22:33:44:56",
	"host ::ffff:1.2.3.4or host ::ffff:1.2.3.5",
	"host ab:cd:or port 2",
	"host many.example",
	"host 10.0.0.1 or many.example",
	"src or dst many.example",
	"ip6 host \\many.example",
	"host (10.0.0.1 or many.example)",
	"HOST x",
	"port http or https",
	"tcp port 80 and (tcp[13] & 2 != 0) or ether proto \\ip",
	"host\n0A", // found by the fuzzer: a pattern anchored at a line start
}

func TestBoundAgreesWithLibpcap(t *testing.T) {
	c := newLibpcapCompiler(t)
	hosts := hostsFile(t)
	for _, expr := range append(slices.Clone(bypasses), seeds...) {
		agreesWithLibpcap(t, c, hosts, expr)
	}
	// Filters of libpcap's grammar, their tokens with or without spaces
	// between.
	rng := rand.New(rand.NewPCG(17, 2026))
	const filters = 3000
	var compiled, lookups, adjacent int
	for range filters {
		var b strings.Builder
		for k, tok := range generate(rng, 3) {
			if k > 0 && rng.IntN(4) > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(tok)
		}
		ok, lookedUp := agreesWithLibpcap(t, c, hosts, b.String())
		if ok {
			compiled++
			if ops := Operators(b.String()); ops > strings.Count(b.String(), " or ")+strings.Count(b.String(), " and ") {
				adjacent++
			}
		}
		if lookedUp {
			lookups++
		}
	}
	// What the comparison covered: without filters libpcap compiles,
	// looks hosts up in and reads operators in without spaces, it would
	// prove little.
	t.Logf("of %d filters libpcap compiled %d (%d with an operator not between spaces) and looked a host up in %d", filters, compiled, adjacent, lookups)
	if compiled < filters/20 || lookups < filters/20 || adjacent == 0 {
		t.Errorf("the generated filters cover too little")
	}
}

// generate returns the tokens of a random filter, nested up to depth.
func generate(rng *rand.Rand, depth int) []string {
	pick := func(s string) string {
		f := strings.Fields(s)
		return f[rng.IntN(len(f))]
	}
	const values = `zq1 zq2.example \zq3 localhost 1.2.3.4 10.0.0.0 ::1 fe80::1 ::ffff:1.2.3.4 1::2
		00:11:22:33:44:55 0011.2233.4455 00-11-22-33-44-55 ab:cd: http 80 0x50 80-90 1.2.3.4or ::1or tcp-syn
		\\tcp a f ff AND`
	primitive := func() []string {
		var p []string
		switch rng.IntN(6) {
		case 0, 1, 2: // a head and a value
			if rng.IntN(2) == 0 {
				p = append(p, pick(`ip ip6 tcp udp ether arp`))
			}
			if rng.IntN(2) == 0 {
				p = append(p, pick(`src dst`))
				if rng.IntN(4) == 0 {
					p = append(p, pick(`or and`), pick(`src dst`))
				}
			}
			if rng.IntN(4) > 0 {
				p = append(p, pick(`host net port portrange proto protochain gateway`))
			}
			p = append(p, pick(values))
			if rng.IntN(6) == 0 {
				p = append(p, pick(`/ mask`), pick(`8 255.0.0.0`))
			}
		case 3: // a value alone: it takes the qualifier before
			p = append(p, pick(values))
		case 4:
			p = append(p, pick(`tcp udp ip6 vlan broadcast multicast inbound`))
			if rng.IntN(2) == 0 {
				p = append(p, pick(`100 1`))
			}
		case 5:
			p = append(p, strings.Fields(pick(`tcp[13]&2!=0 len>100 ip[0]&0xf=5 less`))...)
		}
		return p
	}
	var toks []string
	for k := range 1 + rng.IntN(4) {
		if k > 0 {
			toks = append(toks, pick(`and or && || and or AND`))
		}
		if rng.IntN(5) == 0 {
			toks = append(toks, pick(`not !`))
		}
		if depth > 0 && rng.IntN(4) == 0 {
			toks = append(toks, "(")
			toks = append(toks, generate(rng, depth-1)...)
			toks = append(toks, ")")
			continue
		}
		toks = append(toks, primitive()...)
	}
	return toks
}

// FuzzBoundAgainstLibpcap: whatever the text, the bound reads libpcap's
// tokens and refuses exactly the names libpcap would resolve as hosts.
func FuzzBoundAgainstLibpcap(f *testing.F) {
	c := newLibpcapCompiler(f)
	hosts := hostsFile(f)
	f.Fuzz(func(t *testing.T, expr string) {
		agreesWithLibpcap(t, c, hosts, expr)
	})
}
