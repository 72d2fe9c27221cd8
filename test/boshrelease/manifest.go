package boshrelease

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
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

// AddonApplies tells whether the director places a deployment add-on (the
// manifest's addons) on an instance group of manifest.
func AddonApplies(manifest, addon, instanceGroup map[string]any) (bool, error) {
	return addonApplies(manifest, addon, instanceGroup, false)
}

// RuntimeAddonApplies tells whether the director places an add-on of a
// runtime config on an instance group of manifest, the deployment it
// deploys. Only here does the deployments criterion exist: the director
// refuses it in a deployment's own add-ons.
func RuntimeAddonApplies(manifest, addon, instanceGroup map[string]any) (bool, error) {
	return addonApplies(manifest, addon, instanceGroup, true)
}

// addonApplies follows bosh's placement rules (docs-bosh, runtime-config.md,
// "Placement Rules" and "Precedent for Placement Rules"): the add-on goes
// where include matches (no include: everywhere) and exclude does not (no
// exclude: nowhere excluded). Within include or exclude every given
// criterion must match (AND); a criterion matches when any of its entries
// does (OR). Understood: jobs (by name and release, the instance group's
// own jobs), instance_groups, stemcell (by os, through the manifest's
// stemcell aliases), deployments, networks, azs and lifecycle (an instance
// group without one is a service). An empty criterion is no criterion. Anything else, teams included (they
// are the director's, not the manifest's), is an error, not a guess.
func addonApplies(manifest, addon, ig map[string]any, runtime bool) (bool, error) {
	include, err := placementMatches(manifest, addon["include"], ig, runtime, true)
	if err != nil {
		return false, fmt.Errorf("add-on %v include: %w", addon["name"], err)
	}
	exclude, err := placementMatches(manifest, addon["exclude"], ig, runtime, false)
	if err != nil {
		return false, fmt.Errorf("add-on %v exclude: %w", addon["name"], err)
	}
	return include && !exclude, nil
}

func placementMatches(manifest map[string]any, rule any, ig map[string]any, runtime, whenAbsent bool) (bool, error) {
	if rule == nil {
		return whenAbsent, nil
	}
	criteria, ok := rule.(map[string]any)
	if !ok {
		return false, fmt.Errorf("not a map: %v", rule)
	}
	given := 0
	for criterion, entries := range criteria {
		// The director reads an empty list (or lifecycle "") as a criterion
		// not given: include: {deployments: []} is every deployment.
		if l, isList := entries.([]any); (isList && len(l) == 0) || entries == "" {
			continue
		}
		given++
		matched, err := criterionMatches(manifest, criterion, entries, ig, runtime)
		if err != nil {
			return false, err
		}
		if !matched {
			return false, nil
		}
	}
	if given == 0 {
		return whenAbsent, nil
	}
	return true, nil
}

func criterionMatches(manifest map[string]any, criterion string, entries any, ig map[string]any, runtime bool) (bool, error) {
	if criterion == "lifecycle" {
		want, ok := entries.(string)
		if !ok {
			return false, fmt.Errorf("lifecycle %v is not a string", entries)
		}
		lifecycle := "service"
		if l, ok := ig["lifecycle"].(string); ok {
			lifecycle = l
		}
		return lifecycle == want, nil
	}
	list, ok := entries.([]any)
	if !ok {
		return false, fmt.Errorf("%s is not a list", criterion)
	}
	for _, e := range list {
		var matched bool
		switch criterion {
		case "jobs":
			want, ok := e.(map[string]any)
			if !ok {
				return false, fmt.Errorf("jobs entry %v is not a map", e)
			}
			matched = hasJob(ig, fmt.Sprint(want["name"]), fmt.Sprint(want["release"]))
		case "instance_groups":
			matched = fmt.Sprint(e) == fmt.Sprint(ig["name"])
		case "stemcell":
			want, ok := e.(map[string]any)
			if !ok {
				return false, fmt.Errorf("stemcell entry %v is not a map", e)
			}
			matched = stemcellOS(manifest, ig) == fmt.Sprint(want["os"])
		case "deployments":
			if !runtime {
				return false, errors.New("the deployments criterion is for runtime configs only; the director refuses it in a deployment's add-ons")
			}
			matched = fmt.Sprint(e) == fmt.Sprint(manifest["name"])
		case "networks":
			matched = hasNamed(ig["networks"], fmt.Sprint(e))
		case "azs":
			matched = slices.Contains(stringList(ig["azs"]), fmt.Sprint(e))
		default:
			return false, fmt.Errorf("placement criterion %q is not understood here", criterion)
		}
		if matched {
			return true, nil
		}
	}
	return false, nil
}

func hasNamed(list any, name string) bool {
	items, _ := list.([]any)
	for _, item := range items {
		if m, ok := item.(map[string]any); ok && fmt.Sprint(m["name"]) == name {
			return true
		}
	}
	return false
}

func stringList(v any) []string {
	items, _ := v.([]any)
	out := make([]string, 0, len(items))
	for _, item := range items {
		out = append(out, fmt.Sprint(item))
	}
	return out
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
