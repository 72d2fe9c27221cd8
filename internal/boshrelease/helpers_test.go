package boshrelease

import (
	"reflect"
	"testing"
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

func TestMatchGlob(t *testing.T) {
	tests := []struct {
		pattern, path string
		want          bool
	}{
		{"pcap-server-release/wire/**/*", "pcap-server-release/wire/frame.go", true},
		{"pcap-server-release/wire/**/*", "pcap-server-release/wire/sub/dir/x.go", true},
		{"pcap-server-release/wire/**/*", "pcap-server-release/wirex/frame.go", false},
		{"pcap-server-release/go.mod", "pcap-server-release/go.mod", true},
		{"pcap-server-release/go.mod", "pcap-server-release/go.modx", false},
		{"libpcap/*.tar.gz", "libpcap/libpcap_1.10.3.orig.tar.gz", true},
		{"libpcap/*.tar.gz", "libpcap/sub/x.tar.gz", false},
		{"a/?.go", "a/b.go", true},
		{"a/?.go", "a/bc.go", false},
	}
	for _, tt := range tests {
		if got := MatchGlob(tt.pattern, tt.path); got != tt.want {
			t.Errorf("MatchGlob(%q, %q) = %v", tt.pattern, tt.path, got)
		}
	}
}

func TestAddonApplies(t *testing.T) {
	ig := yamlDoc(t, `{name: cell, jobs: [{name: rep, release: diego}, {name: garden, release: garden-runc}]}`).(map[string]any)
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
	}
	for _, tt := range tests {
		got, err := AddonApplies(yamlDoc(t, tt.addon).(map[string]any), ig)
		if err != nil || got != tt.want {
			t.Errorf("%s: %v, %v; want %v", tt.addon, got, err, tt.want)
		}
	}
	if _, err := AddonApplies(yamlDoc(t, `{name: a, include: {stemcell: [{os: ubuntu}]}}`).(map[string]any), ig); err == nil {
		t.Error("an unknown placement criterion was not an error")
	}
}

func TestVariableRefsAndInterpolate(t *testing.T) {
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
	values := map[string]any{"cert.certificate": "PEM", "system_domain": "sys.example.com", "/abs/name.ca": "CA", "count": 2, "not_interpolated_by_cli": true}
	got := Interpolate(doc, func(ref string) (any, bool) { v, ok := values[ref]; return v, ok })
	want := yamlDoc(t, `
a: PEM
b: https://api.sys.example.com/x
c: true
d: [CA, 3, 2]
e: ((unknown))
`)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Interpolate = %v, want %v", got, want)
	}
}
