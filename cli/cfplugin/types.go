package cfplugin

import "strconv"

// The types below travel through gob between the plugin and the cf CLI.
// Their field names and nesting are the wire format: renaming a field or
// flattening an embedded struct breaks decoding on one side.

// VersionType is a plugin, library or CLI version.
type VersionType struct {
	Major int
	Minor int
	Build int
}

// String renders the version as the cf CLI does ("M.m.b").
func (v VersionType) String() string {
	return strconv.Itoa(v.Major) + "." + strconv.Itoa(v.Minor) + "." + strconv.Itoa(v.Build)
}

// IsZero reports whether no version was set; the cf CLI treats a zero
// MinCliVersion as "no minimum".
func (v VersionType) IsZero() bool {
	return v == VersionType{}
}

// PluginMetadata is what `cf install-plugin` and `cf plugins` learn about the
// plugin through SetPluginMetadata.
type PluginMetadata struct {
	Name           string
	Version        VersionType
	MinCliVersion  VersionType
	LibraryVersion VersionType
	Commands       []Command
}

// Command is one command the plugin adds to cf.
type Command struct {
	Name     string
	Alias    string
	HelpText string
	// UsageDetails is shown by `cf help NAME`.
	UsageDetails Usage
}

// Usage is the help text of a command. Option keys carry no dashes: the cf
// CLI shows a one-character key as -x and longer ones as --xyz.
type Usage struct {
	Usage   string
	Options map[string]string
}

// SpaceFields identifies the targeted space. The cf CLI spells it Guid.
type SpaceFields struct {
	Guid string
	Name string
}

// Space is the reply of GetCurrentSpace. SpaceFields stays embedded because
// gob sees an embedded struct as a field named after its type.
type Space struct {
	SpaceFields
}

// OrganizationFields identifies the targeted org. The cf CLI also sends a
// QuotaDefinition, which gob skips because this type does not declare it.
type OrganizationFields struct {
	Guid string
	Name string
}

// Organization is the reply of GetCurrentOrg.
type Organization struct {
	OrganizationFields
}
