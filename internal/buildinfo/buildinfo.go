// Package buildinfo says which build is running.
package buildinfo

import "runtime/debug"

// version is set at link time: -ldflags "-X .../internal/buildinfo.version=1.2.3".
var version string

// Version is the release version, or the VCS revision of a dev build.
func Version() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				return "dev-" + s.Value[:12]
			}
		}
	}
	return "dev"
}
