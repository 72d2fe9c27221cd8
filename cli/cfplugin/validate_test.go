package cfplugin_test

import (
	"strings"
	"testing"

	"github.com/cloudfoundry/pcap-server-release/cli/cfplugin"
)

func TestValidateMetadata(t *testing.T) {
	taken := []string{"help", "h", "push", "p", "ssh"}
	valid := testMetadata()
	if err := cfplugin.ValidateMetadata(valid, taken); err != nil {
		t.Fatalf("valid metadata: %v", err)
	}

	for _, tc := range []struct {
		name   string
		change func(*cfplugin.PluginMetadata)
		want   []string
	}{
		{"no name", func(m *cfplugin.PluginMetadata) { m.Name = "" }, []string{"plugin name is empty"}},
		{"no commands", func(m *cfplugin.PluginMetadata) { m.Commands = nil }, []string{"no commands"}},
		{"library 2", func(m *cfplugin.PluginMetadata) { m.LibraryVersion.Major = 2 }, []string{"library version 2.0.0"}},
		{"name clash", func(m *cfplugin.PluginMetadata) { m.Commands[0].Name = "ssh" }, []string{"command names already in use: ssh"}},
		{"name clashes with alias", func(m *cfplugin.PluginMetadata) { m.Commands[0].Name = "h" }, []string{"command names already in use: h"}},
		{"alias clash", func(m *cfplugin.PluginMetadata) { m.Commands[0].Alias = "p" }, []string{"command aliases already in use: p"}},
		{"several", func(m *cfplugin.PluginMetadata) {
			m.Name = ""
			m.Commands[0].Alias = "push"
		}, []string{"plugin name is empty", "command aliases already in use: push"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			meta := testMetadata()
			tc.change(&meta)
			err := cfplugin.ValidateMetadata(meta, taken)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}

	// LibraryVersion 0 predates the field and counts as 1; an empty alias
	// never clashes even if "" were listed.
	old := testMetadata()
	old.LibraryVersion = cfplugin.VersionType{}
	old.Commands[0].Alias = ""
	if err := cfplugin.ValidateMetadata(old, append(taken, "")); err != nil {
		t.Errorf("library 0, no alias: %v", err)
	}
}
