package pcapcmd

import (
	"strconv"
	"strings"

	"github.com/cloudfoundry/pcap-server-release/cli/cfplugin"
	"github.com/cloudfoundry/pcap-server-release/internal/buildinfo"
)

// PluginMetadata is what `cf install-plugin` and `cf help pcap` show.
func PluginMetadata() cfplugin.PluginMetadata {
	opts := map[string]string{}
	for _, f := range Flags {
		desc := f.Usage
		if f.Short != "" {
			desc = "-" + f.Short + ": " + desc
		}
		opts[f.Long] = desc
	}
	return cfplugin.PluginMetadata{
		Name:           "pcap",
		Version:        version(buildinfo.Version()),
		LibraryVersion: cfplugin.VersionType{Major: 1},
		Commands: []cfplugin.Command{{
			Name:     "pcap",
			Alias:    "tcpdump",
			HelpText: "Capture the network traffic of an app's instances into a pcap file (live, readable by Wireshark)",
			UsageDetails: cfplugin.Usage{
				Usage:   UsageLine,
				Options: opts,
			},
		}},
	}
}

// version turns "1.2.3" (or "v1.2.3") into the cf CLI's version triple;
// dev builds are 0.0.0.
func version(v string) cfplugin.VersionType {
	parts := strings.SplitN(strings.TrimPrefix(v, "v"), ".", 3)
	var n [3]int
	for i, p := range parts {
		x, err := strconv.Atoi(strings.SplitN(p, "-", 2)[0])
		if err != nil || len(parts) != 3 {
			return cfplugin.VersionType{}
		}
		n[i] = x
	}
	return cfplugin.VersionType{Major: n[0], Minor: n[1], Build: n[2]}
}
