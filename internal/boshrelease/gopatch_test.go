package boshrelease

import (
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/cloudfoundry/pcap-server-release/internal/fuzzcorpus"
)

func yamlDoc(t testing.TB, text string) any {
	t.Helper()
	var doc any
	if err := yaml.Unmarshal([]byte(text), &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

func yamlOps(t *testing.T, text string) []Op {
	t.Helper()
	var ops []Op
	if err := yaml.Unmarshal([]byte(text), &ops); err != nil {
		t.Fatal(err)
	}
	return ops
}

func canonical(t *testing.T, doc any) string {
	t.Helper()
	b, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

const baseManifest = `
releases: [{name: diego, version: "1"}]
instance_groups:
- name: diego-cell
  jobs:
  - {name: rep, release: diego, properties: {diego: {rep: {zone: z1}}}}
- name: router
  jobs:
  - {name: gorouter, release: routing, properties: {router: {ca_certs: [a]}}}
variables: []
`

func TestApplyOps(t *testing.T) {
	tests := []struct {
		name, ops, want string
	}{
		{
			name: "append to arrays",
			ops: `
- {type: replace, path: /releases/-, value: {name: pcap-server, version: latest}}
- {type: replace, path: /instance_groups/name=router/jobs/name=gorouter/properties/router/ca_certs/-, value: b}`,
			want: `
releases: [{name: diego, version: "1"}, {name: pcap-server, version: latest}]
instance_groups:
- name: diego-cell
  jobs:
  - {name: rep, release: diego, properties: {diego: {rep: {zone: z1}}}}
- name: router
  jobs:
  - {name: gorouter, release: routing, properties: {router: {ca_certs: [a, b]}}}
variables: []
`,
		},
		{
			name: "optional segments create what is missing",
			ops: `
- {type: replace, path: "/instance_groups/name=diego-cell/jobs/name=rep/properties/diego/rep/placement_tags?/-", value: iso}
- {type: replace, path: "/addons?/name=dns?/jobs", value: []}
- {type: replace, path: "/releases/name=pcap-server?", value: {name: pcap-server, version: latest}}
- {type: replace, path: "/releases/name=diego?/version", value: "2"}`,
			want: `
releases: [{name: diego, version: "2"}, {name: pcap-server, version: latest}]
instance_groups:
- name: diego-cell
  jobs:
  - {name: rep, release: diego, properties: {diego: {rep: {zone: z1, placement_tags: [iso]}}}}
- name: router
  jobs:
  - {name: gorouter, release: routing, properties: {router: {ca_certs: [a]}}}
variables: []
addons: [{name: dns, jobs: []}]
`,
		},
		{
			name: "indexes and removal",
			ops: `
- {type: replace, path: /instance_groups/0/jobs/0/release, value: diego2}
- {type: replace, path: /instance_groups/-1/name, value: router2}
- {type: remove, path: /variables}
- {type: remove, path: /instance_groups/name=router2/jobs/name=gorouter}
- {type: remove, path: "/nothing?/here"}
- {type: remove, path: "/releases/name=absent?"}`,
			want: `
releases: [{name: diego, version: "1"}]
instance_groups:
- name: diego-cell
  jobs:
  - {name: rep, release: diego2, properties: {diego: {rep: {zone: z1}}}}
- name: router2
  jobs: []
`,
		},
		{
			name: "escaped slash in a key",
			ops:  `[{type: replace, path: "/releases/0/url?", value: x}, {type: replace, path: "/a~1b?", value: 1}]`,
			want: `
releases: [{name: diego, version: "1", url: x}]
instance_groups:
- name: diego-cell
  jobs:
  - {name: rep, release: diego, properties: {diego: {rep: {zone: z1}}}}
- name: router
  jobs:
  - {name: gorouter, release: routing, properties: {router: {ca_certs: [a]}}}
variables: []
a/b: 1
`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ApplyOps(yamlDoc(t, baseManifest), yamlOps(t, tt.ops))
			if err != nil {
				t.Fatal(err)
			}
			if g, w := canonical(t, got), canonical(t, yamlDoc(t, tt.want)); g != w {
				t.Errorf("got\n%s\nwant\n%s", g, w)
			}
		})
	}
}

func TestApplyOpsErrors(t *testing.T) {
	tests := []struct{ ops, want string }{
		{`[{type: replace, path: /instance_groups/name=absent/jobs/-, value: x}]`, "/instance_groups/name=absent: no matching item"},
		{`[{type: replace, path: /missing/key, value: x}]`, "/missing: no such key"},
		{`[{type: replace, path: /releases/5, value: x}]`, "/releases/5: index out of range"},
		{`[{type: replace, path: /releases/name=diego/version/x, value: x}]`, "/releases/name=diego/version/x: expected a map"},
		{`[{type: replace, path: /releases/-/name, value: x}]`, "- must be the last segment"},
		{`[{type: replace, path: releases, value: x}]`, "must start with /"},
		{`[{type: remove, path: /variables/name=absent}]`, "no matching item"},
		{`[{type: remove, path: /absent}]`, "/absent: no such key"},
		{`[{type: test, path: /releases}]`, `unsupported type "test"`},
		{`[{type: replace, path: /releases//x, value: 1}]`, "segment 2 is empty"},
	}
	for _, tt := range tests {
		_, err := ApplyOps(yamlDoc(t, baseManifest), yamlOps(t, tt.ops))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want %q", tt.ops, err, tt.want)
		}
	}

	dup := yamlDoc(t, `items: [{name: a}, {name: a}]`)
	if _, err := ApplyOps(dup, yamlOps(t, `[{type: replace, path: /items/name=a/x, value: 1}]`)); err == nil || !strings.Contains(err.Error(), "more than one") {
		t.Errorf("duplicate match: %v", err)
	}
}

func TestApplyOpsCopiesValues(t *testing.T) {
	ops := yamlOps(t, `
- {type: replace, path: "/a?", value: {list: [1]}}
- {type: replace, path: "/b?", value: {list: [1]}}`)
	doc, err := ApplyOps(map[string]any{}, ops)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ApplyOps(doc, yamlOps(t, `[{type: replace, path: /a/list/-, value: 2}]`)); err != nil {
		t.Fatal(err)
	}
	// The ops value itself must not have been aliased into the document.
	if got := ops[0].Value.(map[string]any)["list"].([]any); len(got) != 1 {
		t.Errorf("op value changed to %v", got)
	}
}

var seedPaths = []any{"/", "/a/b", "/instance_groups/name=x?/jobs/-", "/a~1b/0/-1", "/a?/b=c?/d", "x", "//", "/-/a", "/releases/=x", "/variables/-?"}

func TestFuzzCorpus(t *testing.T) {
	fuzzcorpus.Check(t, "FuzzParsePath", seedPaths...)
}

func FuzzParsePath(f *testing.F) {
	for _, s := range seedPaths {
		f.Add(s.(string))
	}
	doc := yamlDoc(f, baseManifest)
	f.Fuzz(func(t *testing.T, path string) {
		tokens, err := parsePath(path)
		if err != nil {
			return
		}
		for _, tok := range tokens {
			if tok.kind == matchToken && tok.key == "" {
				t.Fatalf("%q: match on an empty key", path)
			}
		}
		// Applying any path that parses must be an error or a document, never a panic.
		_, _ = ApplyOps(deepCopy(doc), []Op{{Type: "replace", Path: path, Value: "v"}})
		_, _ = ApplyOps(deepCopy(doc), []Op{{Type: "remove", Path: path}})
	})
}
