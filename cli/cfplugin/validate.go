package cfplugin

import (
	"fmt"
	"slices"
	"strings"
)

// SupportedLibraryMajor is the newest plugin library major version the cf
// CLI installs.
const SupportedLibraryMajor = 1

// ValidateMetadata applies the checks `cf install-plugin` makes before it
// installs a plugin: a name, at least one command, a plugin library the cf
// CLI understands, and no command name or alias that is already taken.
// taken lists the names and aliases of cf's core commands and of other
// installed plugins. All problems are reported in one error.
func ValidateMetadata(meta PluginMetadata, taken []string) error {
	var problems []string
	if meta.Name == "" {
		problems = append(problems, "plugin name is empty")
	}
	if len(meta.Commands) == 0 {
		problems = append(problems, "plugin has no commands")
	}
	// Plugins built before LibraryVersion existed send 0, which cf reads as 1.
	if major := max(meta.LibraryVersion.Major, 1); major > SupportedLibraryMajor {
		problems = append(problems, fmt.Sprintf("plugin library version %s is newer than the cf CLI supports (major %d)", meta.LibraryVersion, SupportedLibraryMajor))
	}
	var names, aliases []string
	for _, cmd := range meta.Commands {
		if slices.Contains(taken, cmd.Name) {
			names = append(names, cmd.Name)
		}
		if cmd.Alias != "" && slices.Contains(taken, cmd.Alias) {
			aliases = append(aliases, cmd.Alias)
		}
	}
	if len(names) > 0 {
		problems = append(problems, fmt.Sprintf("command names already in use: %s", strings.Join(names, ", ")))
	}
	if len(aliases) > 0 {
		problems = append(problems, fmt.Sprintf("command aliases already in use: %s", strings.Join(aliases, ", ")))
	}
	if len(problems) == 0 {
		return nil
	}
	return fmt.Errorf("invalid plugin metadata for %q: %s", meta.Name, strings.Join(problems, "; "))
}
