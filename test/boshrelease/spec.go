// Package boshrelease reads and exercises this repository's BOSH release in
// tests: job and package specs, job templates rendered by real ERB (Debian's
// ruby) the way the director renders them, add-on placement (which the
// director does, not the bosh CLI), and the ((variables)) a manifest refers
// to. Manifests and ops files go through the real bosh CLI (bosh int), and
// the release tarball through bosh create-release, in the tests.
package boshrelease

import (
	"bytes"
	"fmt"
	"os"
	"regexp"
	"sort"

	"gopkg.in/yaml.v3"
)

// JobSpec is a job's spec file.
type JobSpec struct {
	Name        string                  `yaml:"name"`
	Description string                  `yaml:"description"`
	Templates   map[string]string       `yaml:"templates"`
	Packages    []string                `yaml:"packages"`
	Consumes    []LinkSpec              `yaml:"consumes"`
	Provides    []LinkSpec              `yaml:"provides"`
	Properties  map[string]PropertySpec `yaml:"properties"`
}

// LinkSpec is a consumed or provided link of a job.
type LinkSpec struct {
	Name       string   `yaml:"name"`
	Type       string   `yaml:"type"`
	Optional   bool     `yaml:"optional"`
	Properties []string `yaml:"properties"`
}

// PropertySpec declares one property. HasDefault tells a declared null
// default from none.
type PropertySpec struct {
	Description string `yaml:"description"`
	Default     any    `yaml:"default"`
	Example     any    `yaml:"example"`
	HasDefault  bool   `yaml:"-"`
}

func (p *PropertySpec) UnmarshalYAML(n *yaml.Node) error {
	type plain PropertySpec
	if err := n.Decode((*plain)(p)); err != nil {
		return err
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == "default" {
			p.HasDefault = true
		}
	}
	return nil
}

// PackageSpec is a package's spec file.
type PackageSpec struct {
	Name          string   `yaml:"name"`
	Dependencies  []string `yaml:"dependencies"`
	Files         []string `yaml:"files"`
	ExcludedFiles []string `yaml:"excluded_files"`
}

// LoadJobSpec reads a job spec, refusing keys BOSH does not know.
func LoadJobSpec(path string) (*JobSpec, error) {
	var s JobSpec
	if err := decodeStrict(path, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// LoadPackageSpec reads a package spec, refusing keys BOSH does not know.
func LoadPackageSpec(path string) (*PackageSpec, error) {
	var s PackageSpec
	if err := decodeStrict(path, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

func decodeStrict(path string, dst any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read spec: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(dst); err != nil {
		return fmt.Errorf("spec %s: %w", path, err)
	}
	return nil
}

// propertyCall finds the property names a template passes to p, if_p
// and p's list form: p("a.b"), p('a.b', default), if_p("a", "b"), p(["a", "b"]).
// A call on another object (some_link.p(...)) reads that object's
// properties, not the job's.
var (
	propertyCall = regexp.MustCompile(`(?:^|[^.\w])(if_p|p)\s*\(\s*(\[[^\]]*\]|(?:['"][^'"]+['"]\s*,?\s*)+)`)
	quoted       = regexp.MustCompile(`['"]([^'"]+)['"]`)
)

// TemplateProperties lists the property names a template reads with p
// or if_p. Only literal names are found; a template that builds names at
// run time would escape this scan (the renderer still refuses undeclared
// names, as the director does).
func TemplateProperties(template []byte) []string {
	seen := map[string]bool{}
	for _, call := range propertyCall.FindAllSubmatch(template, -1) {
		args := call[2]
		if string(call[1]) == "p" && !bytes.HasPrefix(args, []byte("[")) {
			// p's second argument is a default, not a name.
			if m := quoted.FindSubmatch(args); m != nil {
				seen[string(m[1])] = true
			}
			continue
		}
		for _, m := range quoted.FindAllSubmatch(args, -1) {
			seen[string(m[1])] = true
		}
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
