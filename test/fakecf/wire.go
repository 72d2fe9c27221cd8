package fakecf

import "github.com/cloudfoundry/pcap-server-release/cli/cfplugin"

// These types are the cf CLI's own plugin types (package plugin and
// plugin/models), declared separately from package cfplugin on purpose:
// gob matches fields by name, so a field the plugin side renames or flattens
// fails against these just as it would against the real cf CLI.

// VersionType mirrors plugin.VersionType.
type VersionType struct {
	Major int
	Minor int
	Build int
}

// PluginMetadata mirrors plugin.PluginMetadata, in the cf CLI's field order.
type PluginMetadata struct {
	Name           string
	Version        VersionType
	LibraryVersion VersionType
	MinCliVersion  VersionType
	Commands       []Command
}

// Usage mirrors plugin.Usage.
type Usage struct {
	Usage   string
	Options map[string]string
}

// Command mirrors plugin.Command.
type Command struct {
	Name         string
	Alias        string
	HelpText     string
	UsageDetails Usage
}

// Space mirrors plugin_models.Space: the fields live one level down, in an
// embedded SpaceFields, which gob sends as a field named "SpaceFields".
type Space struct {
	SpaceFields
}

// SpaceFields mirrors plugin_models.SpaceFields.
type SpaceFields struct {
	Guid string
	Name string
}

// Organization mirrors plugin_models.Organization.
type Organization struct {
	OrganizationFields
}

// OrganizationFields mirrors plugin_models.OrganizationFields, including the
// quota the plugin side does not declare.
type OrganizationFields struct {
	Guid            string
	Name            string
	QuotaDefinition QuotaFields
}

// QuotaFields mirrors plugin_models.QuotaFields.
type QuotaFields struct {
	Guid                    string
	Name                    string
	MemoryLimit             int64
	InstanceMemoryLimit     int64
	RoutesLimit             int
	ServicesLimit           int
	NonBasicServicesAllowed bool
}

// GetAppModel is a cut-down plugin_models.GetAppModel: the fake never
// answers GetApp with data, it only records the call.
type GetAppModel struct {
	Guid string
	Name string
}

// GetAppsModel is a cut-down plugin_models.GetAppsModel.
type GetAppsModel struct {
	Name string
	Guid string
}

func toCfpluginVersion(v VersionType) cfplugin.VersionType {
	return cfplugin.VersionType{Major: v.Major, Minor: v.Minor, Build: v.Build}
}

func toCfpluginMetadata(m PluginMetadata) cfplugin.PluginMetadata {
	meta := cfplugin.PluginMetadata{
		Name:           m.Name,
		Version:        toCfpluginVersion(m.Version),
		MinCliVersion:  toCfpluginVersion(m.MinCliVersion),
		LibraryVersion: toCfpluginVersion(m.LibraryVersion),
	}
	for _, c := range m.Commands {
		meta.Commands = append(meta.Commands, cfplugin.Command{
			Name:     c.Name,
			Alias:    c.Alias,
			HelpText: c.HelpText,
			UsageDetails: cfplugin.Usage{
				Usage:   c.UsageDetails.Usage,
				Options: c.UsageDetails.Options,
			},
		})
	}
	return meta
}
