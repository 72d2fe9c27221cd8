package boshrelease

import (
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// LoadYAML decodes a YAML file into maps, slices and scalars.
func LoadYAML(path string) (any, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	var doc any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	return doc, nil
}

// AddonApplies tells whether the director places a deployment add-on on
// an instance group of manifest: include (when given) must match and
// exclude must not. Within include or exclude every given criterion must
// match; a criterion matches when any of its entries does. The jobs,
// instance_groups and stemcell (by os, through the manifest's stemcell
// aliases) criteria are understood; anything else is an error, not a guess.
func AddonApplies(manifest, addon, instanceGroup map[string]any) (bool, error) {
	include, err := placementMatches(manifest, addon["include"], instanceGroup, true)
	if err != nil {
		return false, fmt.Errorf("add-on %v include: %w", addon["name"], err)
	}
	exclude, err := placementMatches(manifest, addon["exclude"], instanceGroup, false)
	if err != nil {
		return false, fmt.Errorf("add-on %v exclude: %w", addon["name"], err)
	}
	return include && !exclude, nil
}

func placementMatches(manifest map[string]any, rule any, ig map[string]any, whenAbsent bool) (bool, error) {
	if rule == nil {
		return whenAbsent, nil
	}
	criteria, ok := rule.(map[string]any)
	if !ok {
		return false, fmt.Errorf("not a map: %v", rule)
	}
	for criterion, entries := range criteria {
		list, ok := entries.([]any)
		if !ok {
			return false, fmt.Errorf("%s is not a list", criterion)
		}
		matched := false
		for _, e := range list {
			switch criterion {
			case "jobs":
				want, ok := e.(map[string]any)
				if !ok {
					return false, fmt.Errorf("jobs entry %v is not a map", e)
				}
				matched = matched || hasJob(ig, fmt.Sprint(want["name"]), fmt.Sprint(want["release"]))
			case "instance_groups":
				matched = matched || fmt.Sprint(e) == fmt.Sprint(ig["name"])
			case "stemcell":
				want, ok := e.(map[string]any)
				if !ok {
					return false, fmt.Errorf("stemcell entry %v is not a map", e)
				}
				matched = matched || stemcellOS(manifest, ig) == fmt.Sprint(want["os"])
			default:
				return false, fmt.Errorf("placement criterion %q is not understood here", criterion)
			}
		}
		if !matched {
			return false, nil
		}
	}
	return true, nil
}

// stemcellOS is the os of the instance group's stemcell alias, "" when the
// manifest does not declare it.
func stemcellOS(manifest, ig map[string]any) string {
	stemcells, _ := manifest["stemcells"].([]any)
	for _, s := range stemcells {
		if m, ok := s.(map[string]any); ok && m["alias"] == ig["stemcell"] {
			return fmt.Sprint(m["os"])
		}
	}
	return ""
}

func hasJob(ig map[string]any, name, release string) bool {
	jobs, _ := ig["jobs"].([]any)
	for _, j := range jobs {
		if m, ok := j.(map[string]any); ok && fmt.Sprint(m["name"]) == name && fmt.Sprint(m["release"]) == release {
			return true
		}
	}
	return false
}

// placeholder is how the bosh CLI and director find ((variables)).
var placeholder = regexp.MustCompile(`\(\((!?[-/\.\w\pL]+)\)\)`)

// VariableRefs lists the variables a manifest refers to, by name: the part
// of ((name.field)) before the first dot, without the leading "!".
func VariableRefs(doc any) []string {
	seen := map[string]bool{}
	walkStrings(doc, func(s string) {
		for _, m := range placeholder.FindAllStringSubmatch(s, -1) {
			name, _, _ := strings.Cut(strings.TrimPrefix(m[1], "!"), ".")
			seen[name] = true
		}
	})
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func walkStrings(doc any, f func(string)) {
	switch v := doc.(type) {
	case string:
		f(v)
	case map[string]any:
		for k, x := range v {
			f(k)
			walkStrings(x, f)
		}
	case []any:
		for _, x := range v {
			walkStrings(x, f)
		}
	}
}
