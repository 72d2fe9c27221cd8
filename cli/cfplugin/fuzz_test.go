package cfplugin_test

import (
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/cloudfoundry/pcap-server-release/cli/cfplugin"
)

// FuzzClassify feeds argv as typed by a user or sent by cf, NUL-separated.
// Classify must not panic, must only take a real port, and must hand the
// command function exactly the arguments after the port (or after argv[0]).
func FuzzClassify(f *testing.F) {
	f.Add("bin\x0040123\x00SendMetadata")
	f.Add("bin\x0040123\x00pcap\x00my-app\x00-o\x00-")
	f.Add("bin\x00pcap\x00my-app")
	f.Fuzz(func(t *testing.T, joined string) {
		argv := strings.Split(joined, "\x00")
		inv := cfplugin.Classify(argv)
		switch inv.Mode {
		case cfplugin.ModeStandalone:
			if inv.Port != 0 || !slices.Equal(inv.Args, argv[min(1, len(argv)):]) {
				t.Fatalf("standalone %+v for %q", inv, argv)
			}
		case cfplugin.ModeSendMetadata, cfplugin.ModeUninstall, cfplugin.ModeCommand:
			if inv.Port < 1 || inv.Port > 65535 || strconv.Itoa(inv.Port) != strings.TrimLeft(argv[1], "0") {
				t.Fatalf("port %d from %q", inv.Port, argv[1])
			}
			if inv.Mode != cfplugin.ModeSendMetadata && !slices.Equal(inv.Args, argv[2:]) {
				t.Fatalf("args %q for %q", inv.Args, argv)
			}
		default:
			t.Fatalf("mode %v", inv.Mode)
		}
	})
}
