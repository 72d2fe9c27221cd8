package bpfbound

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/cloudfoundry/pcap-server-release/test/fuzzcorpus"
)

// hostile is the filter of the issue: valid, under the length limit, and
// about 27 s of libpcap's optimizer.
func hostile() string {
	parts := make([]string, 510)
	for i := range parts {
		parts[i] = fmt.Sprintf("port %d", i+1)
	}
	return strings.Join(parts, "||")
}

func TestOperators(t *testing.T) {
	for expr, want := range map[string]int{
		"":                                0,
		"tcp port 8080":                   0,
		"tcp port 8080 and host 10.0.0.1": 1,
		"port 1||port 2&&port 3":          2,
		"port 80 or 443 or 8080":          2,
		// Keywords are lower case to libpcap: these are names.
		"PORT 80 OR port 443 AnD not port 22": 0,
		// An address of colons ends where a letter that is not hex
		// begins; one of dots does not.
		"host ::1or host ::2":                                         1,
		"host ::ffff:1.2.3.4or host ::2":                              1,
		"ether host 00:11:22:33:44:55or ether host 00:11:22:33:44:56": 1,
		"host 1::2and port 3":                                         0, // ::2a, then the name nd
		"host 10.0.0.1or host 10.0.0.2":                               0, // the name 10.0.0.1or
		"host \\or":                                                   0, // the name or
		"host or.example.com and host and-or":                         1, // names, not operators
		"(tcp[tcpflags] & (tcp-syn|tcp-fin) != 0) and not src and dst net localnet":   2,
		"tcp port 80 and (((ip[2:2] - ((ip[0]&0xf)<<2)) - ((tcp[12]&0xf0)>>2)) != 0)": 1,
		"ether host 00:11:22:33:44:55 or ip6 host fe80::1":                            1,
		"(port 1)or(port 2)": 1,
		"not not ! port 1":   0,
	} {
		if got := Operators(expr); got != want {
			t.Errorf("Operators(%q) = %d, want %d", expr, got, want)
		}
	}
}

func TestCheckNamesTheBound(t *testing.T) {
	err := Check(hostile())
	var tc *TooComplexError
	if !errors.As(err, &tc) || tc.Operators != 509 {
		t.Fatalf("hostile filter: %v", err)
	}
	for _, want := range []string{"509", fmt.Sprint(MaxOperators), "and/or"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q does not say %q", err, want)
		}
	}
	atBound := strings.Repeat("port 1 or ", MaxOperators) + "port 2"
	if err := Check(atBound); err != nil {
		t.Errorf("%d operators refused: %v", MaxOperators, err)
	}
	if err := Check(atBound + " or port 3"); err == nil {
		t.Errorf("%d operators accepted", MaxOperators+1)
	}
}

// The bypass: 379 alternatives in under 5000 characters, no
// operator as the old count saw them, 378 as libpcap reads them.
func TestAddressesFollowedByOperatorsCount(t *testing.T) {
	parts := make([]string, 379)
	for i := range parts {
		parts[i] = fmt.Sprintf("host ::%x", i+1)
	}
	expr := strings.Join(parts, "or ")
	if len(expr) > 5000 {
		t.Fatalf("%d characters, beyond the API's limit", len(expr))
	}
	var tc *TooComplexError
	if err := Check(expr); !errors.As(err, &tc) || tc.Operators != 378 {
		t.Fatalf("Check: %v, want 378 operators, too many", err)
	}
}

// A name libpcap would resolve as a host is refused, naming it; names of
// ports, networks and protocols are not (libpcap reads them from the
// cell's files, one value each).
func TestHostNamesAreRefused(t *testing.T) {
	for expr, want := range map[string]string{
		"host db.example.com":                          "db.example.com",
		"tcp port 80 and host 10.0.0.1 or api.example": "api.example",
		"src or dst many.example":                      "many.example",
		"ip6 host \\many.example":                      "many.example",
		"host (10.0.0.1 or many.example)":              "many.example",
		"not ether host router1":                       "router1",
		"port 80 and dst localhost":                    "localhost",
		"gateway gw.example":                           "gw.example",
		"host 10.0.0.1or host 10.0.0.2":                "10.0.0.1or",
	} {
		err := Check(expr)
		var he *HostNameError
		if !errors.As(err, &he) || he.Name != want {
			t.Errorf("Check(%q) = %v, want the host name %q refused", expr, err, want)
			continue
		}
		for _, says := range []string{want, "addresses", "DNS"} {
			if !strings.Contains(err.Error(), says) {
				t.Errorf("%q does not say %q", err, says)
			}
		}
	}
	for _, expr := range []string{
		"port http or https", "tcp portrange ftp-data-http", "net 10.0.0.0/8 or net loopback",
		"ip proto \\tcp", "ether proto \\arp", "host 10.0.0.1 or 10.0.0.2", "host ::1 and not port ssh",
		"tcp or foo", "vlan 100 and udp", "tcp[tcpflags] & (tcp-syn|tcp-fin) != 0", "ether host 00:11:22:33:44:55",
	} {
		if err := Check(expr); err != nil {
			t.Errorf("Check(%q) = %v, want no refusal", expr, err)
		}
	}
}

var seeds = []string{"tcp port 8080 and host 10.0.0.1", "port 1||port 2&&port 3", "host or.example.com", "tcp[13] & 2 != 0 or udp", "\xff\xfeor\x00and"}

func TestSeedCorpus(t *testing.T) {
	for fuzzer, seeds := range map[string][]string{"FuzzOperators": seeds, "FuzzBoundAgainstLibpcap": bypasses} {
		var s []any
		for _, v := range seeds {
			s = append(s, v)
		}
		fuzzcorpus.Check(t, fuzzer, s...)
	}
}

// FuzzOperators: any text is counted without panicking, and no count
// exceeds what the text could hold (each operator is at least two bytes
// plus a separator, but "&&&&" holds two in four bytes).
func FuzzOperators(f *testing.F) {
	f.Fuzz(func(t *testing.T, expr string) {
		if n := Operators(expr); n < 0 || n > len(expr)/2 {
			t.Fatalf("Operators(%q) = %d", expr, n)
		}
	})
}
