package realcf_test

import (
	"os"
	"testing"

	"github.com/cloudfoundry/pcap-server-release/test/realcf"
)

// TestRequireUnpacksEveryPart checks what every real-parts test relies on:
// each binary is where Binaries says, and executable.
func TestRequireUnpacksEveryPart(t *testing.T) {
	b := realcf.Require(t, "all")
	for _, p := range []string{b.Gorouter(), b.RouteRegistrar(), b.NATSServer(), b.CF(),
		b.Garden("gdn"), b.Garden("runc"), b.Garden("init"), b.Garden("dadoo"), b.Garden("nstar"), b.Gardenctl()} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		if fi.Mode()&0o111 == 0 {
			t.Errorf("%s is not executable (mode %v)", p, fi.Mode())
		}
	}
	for _, e := range []string{"gorouter.yml.tmpl", "route_registrar.json.tmpl", "netplugin.sh"} {
		if _, err := os.Stat(b.Example(e)); err != nil {
			t.Errorf("example %v", err)
		}
	}
}
