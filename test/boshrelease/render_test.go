package boshrelease

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeJob lays out a job directory: spec and templates/.
func writeJob(t *testing.T, spec string, templates map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "spec"), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, text := range templates {
		path := filepath.Join(dir, "templates", name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const semanticsSpec = `---
name: semantics
templates:
  out.json.erb: config/out.json
  script.erb: bin/script
properties:
  with_default: {default: 8MiB}
  nested.value: {description: no default}
  optional: {description: no default}
  overridden: {default: spec}
  null_in_manifest: {default: from-spec}
`

const semanticsTemplate = `<%
  require 'json'
  optional = 'unset'
  if_p('optional') { |v| optional = "set:#{v}" }.else { optional = 'else-ran' }
  both = 'no'
  if_p('with_default', 'overridden') { |a, b| both = "#{a}+#{b}" }
  db = nil
  if_link('db') { |l| db = l.instances.map(&:address) + [l.p('port'), l.p('missing', 'dflt')] }
  nolink = 'none'
  if_link('absent') { nolink = 'present' }.else { nolink = 'else' }
-%>
<%= JSON.generate(
  'with_default' => p('with_default'),
  'nested' => p('nested.value', 'fallback'),
  'first_of' => p(['nested.value', 'with_default']),
  'optional' => optional,
  'both' => both,
  'overridden' => p('overridden'),
  'null_in_manifest' => p('null_in_manifest'),
  'db' => db,
  'nolink' => nolink,
  'spec' => [spec.id, spec.ip, spec.name, spec.index, spec.deployment, spec.address, spec.az, spec.bootstrap, spec.job.name, spec.dns_domain_name],
  'index' => index,
) %>
`

func render(t *testing.T, jobDir string, props map[string]any, links map[string]Link) (string, error) {
	t.Helper()
	out := t.TempDir()
	err := Render(context.Background(), RenderRequest{
		JobDir:     jobDir,
		OutDir:     out,
		Properties: props,
		Instance: Instance{
			ID: "6a3c-id", IP: "10.0.16.5", Name: "diego-cell", Index: 2, Deployment: "cf",
			Address: "6a3c-id.diego-cell.default.cf.bosh", AZ: "z1", Bootstrap: true,
		},
		Links: links,
	})
	return out, err
}

func TestRenderGivesTemplatesWhatTheDirectorGives(t *testing.T) {
	job := writeJob(t, semanticsSpec, map[string]string{
		"out.json.erb": semanticsTemplate,
		"script.erb":   "#!/bin/sh\necho <%= p('with_default') %>\n",
	})
	out, err := render(t, job, map[string]any{
		"overridden":       "manifest",
		"null_in_manifest": nil,
		"not_declared":     "ignored",
	}, map[string]Link{
		"db": {
			Instances:  []Instance{{Address: "db-0.internal"}, {Address: "db-1.internal"}},
			Properties: map[string]any{"port": 5432},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(out, "config/out.json"))
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatalf("%v: %s", err, data)
	}
	want := map[string]any{
		"with_default":     "8MiB",
		"nested":           "fallback",
		"first_of":         "8MiB",
		"optional":         "else-ran",
		"both":             "8MiB+manifest",
		"overridden":       "manifest",
		"null_in_manifest": "from-spec",
		"db":               []any{"db-0.internal", "db-1.internal", float64(5432), "dflt"},
		"nolink":           "else",
		"spec": []any{"6a3c-id", "10.0.16.5", "diego-cell", float64(2), "cf",
			"6a3c-id.diego-cell.default.cf.bosh", "z1", true, "semantics", "bosh"},
		"index": float64(2),
	}
	for k, w := range want {
		if g, _ := json.Marshal(got[k]); string(g) != mustJSON(t, w) {
			t.Errorf("%s = %s, want %s", k, g, mustJSON(t, w))
		}
	}

	st, err := os.Stat(filepath.Join(out, "bin/script"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm()&0o111 == 0 {
		t.Errorf("bin/script mode %v: not executable", st.Mode())
	}
}

func TestRenderIfPYieldsSetProperties(t *testing.T) {
	job := writeJob(t, semanticsSpec, map[string]string{"out.json.erb": semanticsTemplate, "script.erb": ""})
	out, err := render(t, job, map[string]any{"optional": "x", "nested": map[string]any{"value": "v"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(out, "config/out.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"optional":"set:x"`, `"nested":"v"`, `"first_of":"v"`, `"db":null`} {
		if !strings.Contains(string(data), want) {
			t.Errorf("rendered %s, want %s in it", data, want)
		}
	}
}

func TestRenderMissingRequiredPropertyNamesIt(t *testing.T) {
	job := writeJob(t, `---
name: required
templates:
  a.erb: config/a
  b.erb: config/b
properties:
  tls.certificate: {description: required}
  fine: {default: 1}
`, map[string]string{
		"a.erb": "<%= p('fine') %>\n<%= p('tls.certificate') %>\n",
		"b.erb": "<%= p('fine') %>\n",
	})
	_, err := render(t, job, nil, nil)
	if err == nil {
		t.Fatal("rendered without a required property")
	}
	for _, want := range []string{`Error filling in template 'a.erb' (line 2: Can't find property '["tls.certificate"]')`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "b.erb") {
		t.Errorf("error names a template that rendered: %v", err)
	}
}

func TestRenderRefusesUndeclaredProperties(t *testing.T) {
	job := writeJob(t, `---
name: undeclared
templates:
  a.erb: config/a
properties: {}
`, map[string]string{"a.erb": "<%= p('set.in.manifest') %>\n"})
	_, err := render(t, job, map[string]any{"set": map[string]any{"in": map[string]any{"manifest": "x"}}}, nil)
	if err == nil || !strings.Contains(err.Error(), `Can't find property '["set.in.manifest"]'`) {
		t.Fatalf("undeclared property: %v", err)
	}
}

func TestRenderReportsRaisesAndMissingLinks(t *testing.T) {
	job := writeJob(t, `---
name: raises
templates:
  a.erb: config/a
  b.erb: config/b
`, map[string]string{
		"a.erb": "<% raise 'operator error: set x' %>\n",
		"b.erb": "<%= link('nats').address %>\n",
	})
	_, err := render(t, job, nil, nil)
	if err == nil {
		t.Fatal("rendered")
	}
	for _, want := range []string{"'a.erb' (line 1: operator error: set x)", "'b.erb' (line 1: Can't find link 'nats')"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
