package boshrelease

import (
	"reflect"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestTemplateProperties(t *testing.T) {
	template := []byte(`<%
  a = p('plain')
  b = p("with.default", 'not-a-name')
  c = p(['first.choice', "second.choice"])
  if_p('x.one', "x.two") { |o, t| }
  link('nats').p('nats.port')
  nats_link.if_p('link.prop') { }
  help_p('not.a.call')
-%><%= p("inline") %>`)
	want := []string{"first.choice", "inline", "plain", "second.choice", "with.default", "x.one", "x.two"}
	if got := TemplateProperties(template); !reflect.DeepEqual(got, want) {
		t.Errorf("TemplateProperties = %v, want %v", got, want)
	}
}

func TestAddonApplies(t *testing.T) {
	manifest := yamlDoc(t, `{stemcells: [{alias: default, os: ubuntu-noble}, {alias: win, os: windows2019}]}`).(map[string]any)
	ig := yamlDoc(t, `{name: cell, stemcell: default, jobs: [{name: rep, release: diego}, {name: garden, release: garden-runc}]}`).(map[string]any)
	tests := []struct {
		addon string
		want  bool
	}{
		{`{name: a}`, true},
		{`{name: a, include: {jobs: [{name: rep, release: diego}]}}`, true},
		{`{name: a, include: {jobs: [{name: rep, release: other}]}}`, false},
		{`{name: a, include: {jobs: [{name: x, release: y}, {name: garden, release: garden-runc}]}}`, true},
		{`{name: a, include: {jobs: [{name: rep, release: diego}], instance_groups: [router]}}`, false},
		{`{name: a, include: {jobs: [{name: rep, release: diego}]}, exclude: {instance_groups: [cell]}}`, false},
		{`{name: a, exclude: {jobs: [{name: garden, release: garden-runc}]}}`, false},
		{`{name: a, include: {stemcell: [{os: ubuntu-jammy}, {os: ubuntu-noble}]}}`, true},
		{`{name: a, include: {stemcell: [{os: windows2019}]}}`, false},
		{`{name: a, include: {stemcell: [{os: ubuntu-noble}]}, exclude: {jobs: [{name: rep, release: diego}]}}`, false},
	}
	for _, tt := range tests {
		got, err := AddonApplies(manifest, yamlDoc(t, tt.addon).(map[string]any), ig)
		if err != nil || got != tt.want {
			t.Errorf("%s: %v, %v; want %v", tt.addon, got, err, tt.want)
		}
	}
	if _, err := AddonApplies(manifest, yamlDoc(t, `{name: a, include: {teams: [ops]}}`).(map[string]any), ig); err == nil {
		t.Error("an unknown placement criterion was not an error")
	}
	if _, err := AddonApplies(manifest, yamlDoc(t, `{name: a, include: {deployments: [cf]}}`).(map[string]any), ig); err == nil {
		t.Error("a deployment add-on with a deployments criterion was not an error")
	}
}

// TestRuntimeAddonApplies: the criteria a runtime config's add-on adds,
// AND across criteria and OR within one, as bosh's documentation has it.
func TestRuntimeAddonApplies(t *testing.T) {
	manifest := yamlDoc(t, `{name: cf, stemcells: [{alias: default, os: ubuntu-noble}]}`).(map[string]any)
	router := yamlDoc(t, `{name: router, stemcell: default, azs: [z1, z2], networks: [{name: default}, {name: edge}],
  jobs: [{name: gorouter, release: routing}]}`).(map[string]any)
	errand := yamlDoc(t, `{name: smoke-tests, lifecycle: errand, stemcell: default, azs: [z1], networks: [{name: default}],
  jobs: [{name: smoke_tests, release: cf-smoke-tests}]}`).(map[string]any)
	tests := []struct {
		addon        string
		router, task bool
	}{
		{`{name: a}`, true, true},
		{`{name: a, include: {deployments: [cf]}}`, true, true},
		{`{name: a, include: {deployments: [other, cf]}}`, true, true},
		{`{name: a, include: {deployments: [other]}}`, false, false},
		{`{name: a, include: {deployments: []}}`, true, true},
		{`{name: a, include: {deployments: [cf], lifecycle: service}}`, true, false},
		{`{name: a, include: {lifecycle: errand}}`, false, true},
		{`{name: a, include: {networks: [edge]}}`, true, false},
		{`{name: a, include: {azs: [z2]}}`, true, false},
		{`{name: a, include: {deployments: [cf]}, exclude: {jobs: [{name: gorouter, release: routing}]}}`, false, true},
		// Exclude's criteria must all match too: only errands of cf.
		{`{name: a, exclude: {deployments: [cf], lifecycle: errand}}`, true, false},
		{`{name: a, exclude: {deployments: [other], lifecycle: errand}}`, true, true},
		{`{name: a, exclude: {}}`, true, true},
	}
	for _, tt := range tests {
		addon := yamlDoc(t, tt.addon).(map[string]any)
		for _, c := range []struct {
			ig   map[string]any
			want bool
		}{{router, tt.router}, {errand, tt.task}} {
			got, err := RuntimeAddonApplies(manifest, addon, c.ig)
			if err != nil || got != c.want {
				t.Errorf("%s on %v: %v, %v; want %v", tt.addon, c.ig["name"], got, err, c.want)
			}
		}
	}
}

func TestVariableRefs(t *testing.T) {
	doc := yamlDoc(t, `
a: ((cert.certificate))
b: https://api.((system_domain))/x
c: ((!not_interpolated_by_cli))
d: ["((/abs/name.ca))", 3, ((count))]
e: ((unknown))
`)
	if got, want := VariableRefs(doc), []string{"/abs/name", "cert", "count", "not_interpolated_by_cli", "system_domain", "unknown"}; !reflect.DeepEqual(got, want) {
		t.Errorf("VariableRefs = %v, want %v", got, want)
	}
}

func yamlDoc(t testing.TB, text string) any {
	t.Helper()
	var doc any
	if err := yaml.Unmarshal([]byte(text), &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}
