package boshrelease

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Op is one operation of an ops file (go-patch, as bosh interpolate -o
// applies it).
type Op struct {
	Type  string `yaml:"type"`
	Path  string `yaml:"path"`
	Value any    `yaml:"value"`
}

// LoadOps reads an ops file.
func LoadOps(path string) ([]Op, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read ops file: %w", err)
	}
	var ops []Op
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	if err := dec.Decode(&ops); err != nil {
		return nil, fmt.Errorf("ops file %s: %w", path, err)
	}
	return ops, nil
}

// ApplyOps applies ops in order to doc (as decoded from YAML into any) and
// returns the result. doc is modified in place where possible. This is the
// subset of go-patch that ops files of this kind use: replace and remove;
// map keys, array indexes (negative from the end), "-" (after the last
// item), "key=value" matches, and "?" making a segment and every one after
// it optional (created by replace when missing, skipped by remove).
func ApplyOps(doc any, ops []Op) (any, error) {
	for i, op := range ops {
		tokens, err := parsePath(op.Path)
		if err != nil {
			return nil, fmt.Errorf("op %d: %w", i, err)
		}
		switch op.Type {
		case "replace":
			doc, err = replaceAt(doc, tokens, 0, op.Value, false)
		case "remove":
			if len(tokens) == 0 {
				return nil, fmt.Errorf("op %d: cannot remove the document", i)
			}
			doc, err = removeAt(doc, tokens, 0, false)
		default:
			err = fmt.Errorf("unsupported type %q", op.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("op %d (%s %s): %w", i, op.Type, op.Path, err)
		}
	}
	return doc, nil
}

type tokenKind int

const (
	keyToken tokenKind = iota
	indexToken
	appendToken
	matchToken
)

type pathToken struct {
	kind       tokenKind
	key        string // keyToken: the key; matchToken: the key compared
	value      string // matchToken: the value compared
	index      int
	optional   bool
	rawSegment string
}

// parsePath splits a go-patch path such as /instance_groups/name=x?/jobs/-.
// "~1" and "~0" stand for "/" and "~" inside a segment.
func parsePath(path string) ([]pathToken, error) {
	if path == "" || path[0] != '/' {
		return nil, fmt.Errorf("path %q must start with /", path)
	}
	if path == "/" {
		return nil, nil
	}
	var tokens []pathToken
	for i, seg := range strings.Split(path[1:], "/") {
		t := pathToken{rawSegment: seg}
		if strings.HasSuffix(seg, "?") {
			t.optional = true
			seg = strings.TrimSuffix(seg, "?")
		}
		seg = strings.NewReplacer("~1", "/", "~0", "~").Replace(seg)
		switch {
		case seg == "":
			return nil, fmt.Errorf("path %q: segment %d is empty", path, i+1)
		case seg == "-":
			t.kind = appendToken
		case strings.Contains(seg, "="):
			k, v, _ := strings.Cut(seg, "=")
			if k == "" {
				return nil, fmt.Errorf("path %q: segment %q matches on an empty key", path, t.rawSegment)
			}
			t.kind, t.key, t.value = matchToken, k, v
		default:
			if n, err := strconv.Atoi(seg); err == nil {
				t.kind, t.index = indexToken, n
			} else {
				t.kind, t.key = keyToken, seg
			}
		}
		if t.kind == appendToken && t.optional {
			return nil, fmt.Errorf("path %q: - cannot be optional", path)
		}
		tokens = append(tokens, t)
	}
	for i, t := range tokens {
		if t.kind == appendToken && i != len(tokens)-1 {
			return nil, fmt.Errorf("path %q: - must be the last segment", path)
		}
	}
	return tokens, nil
}

func at(tokens []pathToken, i int) string {
	var b strings.Builder
	for _, t := range tokens[:i+1] {
		b.WriteString("/" + t.rawSegment)
	}
	return b.String()
}

func replaceAt(node any, tokens []pathToken, i int, value any, optional bool) (any, error) {
	if i == len(tokens) {
		return deepCopy(value), nil
	}
	t := tokens[i]
	optional = optional || t.optional
	last := i == len(tokens)-1
	switch t.kind {
	case keyToken:
		m, ok := node.(map[string]any)
		if node == nil && optional {
			m, ok = map[string]any{}, true
		}
		if !ok {
			return nil, fmt.Errorf("%s: expected a map, found %s", at(tokens, i), kindOf(node))
		}
		child, found := m[t.key]
		if !found && !last && !optional {
			return nil, fmt.Errorf("%s: no such key", at(tokens, i))
		}
		next, err := replaceAt(child, tokens, i+1, value, optional)
		if err != nil {
			return nil, err
		}
		m[t.key] = next
		return m, nil
	case indexToken:
		a, ok := node.([]any)
		if !ok {
			return nil, fmt.Errorf("%s: expected an array, found %s", at(tokens, i), kindOf(node))
		}
		idx, err := arrayIndex(tokens, i, len(a))
		if err != nil {
			return nil, err
		}
		next, err := replaceAt(a[idx], tokens, i+1, value, optional)
		if err != nil {
			return nil, err
		}
		a[idx] = next
		return a, nil
	case appendToken:
		a, ok := node.([]any)
		if node == nil && optional {
			a, ok = []any{}, true
		}
		if !ok {
			return nil, fmt.Errorf("%s: expected an array, found %s", at(tokens, i), kindOf(node))
		}
		return append(a, deepCopy(value)), nil
	default: // matchToken
		a, ok := node.([]any)
		if node == nil && optional {
			a, ok = []any{}, true
		}
		if !ok {
			return nil, fmt.Errorf("%s: expected an array, found %s", at(tokens, i), kindOf(node))
		}
		idx, err := matchIndex(tokens, i, a)
		if err != nil {
			return nil, err
		}
		if idx < 0 {
			if !optional {
				return nil, fmt.Errorf("%s: no matching item", at(tokens, i))
			}
			if last {
				return append(a, deepCopy(value)), nil
			}
			a = append(a, map[string]any{t.key: t.value})
			idx = len(a) - 1
		}
		next, err := replaceAt(a[idx], tokens, i+1, value, optional)
		if err != nil {
			return nil, err
		}
		a[idx] = next
		return a, nil
	}
}

func removeAt(node any, tokens []pathToken, i int, optional bool) (any, error) {
	t := tokens[i]
	optional = optional || t.optional
	last := i == len(tokens)-1
	switch t.kind {
	case keyToken:
		m, ok := node.(map[string]any)
		if !ok {
			if node == nil && optional {
				return node, nil
			}
			return nil, fmt.Errorf("%s: expected a map, found %s", at(tokens, i), kindOf(node))
		}
		child, found := m[t.key]
		if !found {
			if optional {
				return m, nil
			}
			return nil, fmt.Errorf("%s: no such key", at(tokens, i))
		}
		if last {
			delete(m, t.key)
			return m, nil
		}
		next, err := removeAt(child, tokens, i+1, optional)
		if err != nil {
			return nil, err
		}
		m[t.key] = next
		return m, nil
	case indexToken, matchToken:
		a, ok := node.([]any)
		if !ok {
			if node == nil && optional {
				return node, nil
			}
			return nil, fmt.Errorf("%s: expected an array, found %s", at(tokens, i), kindOf(node))
		}
		var idx int
		var err error
		if t.kind == indexToken {
			idx, err = arrayIndex(tokens, i, len(a))
		} else if idx, err = matchIndex(tokens, i, a); err == nil && idx < 0 {
			if optional {
				return a, nil
			}
			err = fmt.Errorf("%s: no matching item", at(tokens, i))
		}
		if err != nil {
			return nil, err
		}
		if last {
			return append(a[:idx:idx], a[idx+1:]...), nil
		}
		next, err := removeAt(a[idx], tokens, i+1, optional)
		if err != nil {
			return nil, err
		}
		a[idx] = next
		return a, nil
	default:
		return nil, fmt.Errorf("%s: - cannot be removed", at(tokens, i))
	}
}

func arrayIndex(tokens []pathToken, i, n int) (int, error) {
	idx := tokens[i].index
	if idx < 0 {
		idx += n
	}
	if idx < 0 || idx >= n {
		return 0, fmt.Errorf("%s: index out of range (%d items)", at(tokens, i), n)
	}
	return idx, nil
}

// matchIndex finds the one item whose key equals the token's value, -1 if
// none; several matches are an error, as in go-patch.
func matchIndex(tokens []pathToken, i int, a []any) (int, error) {
	t := tokens[i]
	found := -1
	for j, item := range a {
		m, ok := item.(map[string]any)
		if !ok {
			continue
		}
		if v, ok := m[t.key]; ok && fmt.Sprint(v) == t.value {
			if found >= 0 {
				return 0, fmt.Errorf("%s: more than one matching item", at(tokens, i))
			}
			found = j
		}
	}
	return found, nil
}

func kindOf(v any) string {
	switch v.(type) {
	case nil:
		return "nothing"
	case map[string]any:
		return "a map"
	case []any:
		return "an array"
	default:
		return fmt.Sprintf("%T", v)
	}
}

func deepCopy(v any) any {
	switch v := v.(type) {
	case map[string]any:
		c := make(map[string]any, len(v))
		for k, x := range v {
			c[k] = deepCopy(x)
		}
		return c
	case []any:
		c := make([]any, len(v))
		for i, x := range v {
			c[i] = deepCopy(x)
		}
		return c
	default:
		return v
	}
}
