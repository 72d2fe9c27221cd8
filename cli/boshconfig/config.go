// Package boshconfig reads the bosh CLI's login, ~/.bosh/config, and keeps
// its access token fresh as the bosh CLI does: refreshed at the director's
// UAA (found through the director's /info) when it is about to expire, and
// written back, keeping every other key as it was. BOSH_CLIENT and
// BOSH_CLIENT_SECRET get a client's token instead.
package boshconfig

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"gopkg.in/yaml.v3"
)

// maxFileBytes bounds the file read: a config with many environments and
// their CA certificates is a few dozen KiB.
const maxFileBytes = 1 << 20

// DefaultPort is the director's, which the bosh CLI adds to a URL without
// one.
const DefaultPort = "25555"

// Environment is one entry of the config's environments.
type Environment struct {
	URL             string `yaml:"url"`
	CACert          string `yaml:"ca_cert"`
	Alias           string `yaml:"alias"`
	AccessToken     string `yaml:"access_token"`
	AccessTokenType string `yaml:"access_token_type"`
	RefreshToken    string `yaml:"refresh_token"`
}

// File is a parsed config: its environments, and the YAML it came from,
// so that a write-back changes the tokens and nothing else.
type File struct {
	Environments []Environment
	doc          *yaml.Node
}

// Parse reads the config. Unknown keys are kept, never refused: the bosh
// CLI's own keys (usernames, passwords of basic auth) are not ours to
// judge.
func Parse(data []byte) (*File, error) {
	if len(data) > maxFileBytes {
		return nil, fmt.Errorf("bosh config is %d bytes, more than %d", len(data), maxFileBytes)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("bosh config is not YAML: %w", err)
	}
	f := &File{doc: &doc}
	if len(doc.Content) == 0 {
		return f, nil // an empty file: no environment yet
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, errors.New("bosh config is not a YAML mapping")
	}
	var content struct {
		Environments []Environment `yaml:"environments"`
	}
	if err := root.Decode(&content); err != nil {
		return nil, fmt.Errorf("bosh config: %w", err)
	}
	for i, e := range content.Environments {
		if e.URL == "" {
			return nil, fmt.Errorf("bosh config: environments[%d] has no url", i)
		}
	}
	f.Environments = content.Environments
	return f, nil
}

// Find picks the environment -e names: by alias, or by URL as the bosh CLI
// reads one (https:// and port 25555 when left out).
func (f *File) Find(name string) (Environment, bool) {
	for _, e := range f.Environments {
		if e.Alias != "" && e.Alias == name {
			return e, true
		}
	}
	want, err := NormalizeURL(name)
	if err != nil {
		return Environment{}, false
	}
	for _, e := range f.Environments {
		if u, err := NormalizeURL(e.URL); err == nil && u == want {
			return e, true
		}
	}
	return Environment{}, false
}

// NormalizeURL is a director URL as the bosh CLI makes it of -e: https
// when no scheme is given, port 25555 when none is, no trailing slash.
func NormalizeURL(s string) (string, error) {
	s = strings.TrimSpace(s)
	if !strings.Contains(s, "://") {
		s = "https://" + s
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Hostname() == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("%q is not a director URL", s)
	}
	if u.Port() == "" {
		u.Host = net.JoinHostPort(u.Hostname(), DefaultPort)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	return u.String(), nil
}

// WithTokens is the file with the tokens of the environment at envURL
// replaced, everything else as it was.
func (f *File) WithTokens(envURL, accessToken, refreshToken string) ([]byte, error) {
	if len(f.doc.Content) == 0 {
		return nil, errors.New("bosh config has no environments")
	}
	want, err := NormalizeURL(envURL)
	if err != nil {
		return nil, err
	}
	envs := mappingValue(f.doc.Content[0], "environments")
	if envs == nil || envs.Kind != yaml.SequenceNode {
		return nil, errors.New("bosh config has no environments")
	}
	for _, e := range envs.Content {
		urlNode := mappingValue(e, "url")
		if urlNode == nil {
			continue
		}
		if u, err := NormalizeURL(urlNode.Value); err != nil || u != want {
			continue
		}
		setString(e, "access_token", accessToken)
		setString(e, "access_token_type", "bearer")
		if refreshToken != "" {
			setString(e, "refresh_token", refreshToken)
		}
		out, err := yaml.Marshal(f.doc)
		if err != nil {
			return nil, fmt.Errorf("encode the bosh config: %w", err)
		}
		if err := f.sameBut(out, want); err != nil {
			return nil, err
		}
		return out, nil
	}
	return nil, fmt.Errorf("bosh config has no environment %s", envURL)
}

// sameBut checks that out reads back as the file did, but for the tokens
// of the environment at envURL: the YAML encoder does not round-trip
// every odd scalar, and the bosh CLI's login must never be lost to a
// write-back.
func (f *File) sameBut(out []byte, envURL string) error {
	again, err := Parse(out)
	if err != nil || len(again.Environments) != len(f.Environments) {
		return fmt.Errorf("the bosh config would not read back the same after writing the token (%v): not writing it", err)
	}
	for i, e := range again.Environments {
		before := f.Environments[i]
		if u, _ := NormalizeURL(e.URL); u == envURL {
			e.AccessToken, e.AccessTokenType, e.RefreshToken = before.AccessToken, before.AccessTokenType, before.RefreshToken
		}
		if e != before {
			return fmt.Errorf("the bosh config would not read back the same after writing the token (environment %d): not writing it", i)
		}
	}
	return nil
}

// mappingValue is the value of key in a mapping node, nil if absent.
func mappingValue(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

// setString sets key to a plain string, adding it if absent.
func setString(m *yaml.Node, key, value string) {
	if v := mappingValue(m, key); v != nil {
		*v = yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: value}
		return
	}
	m.Content = append(m.Content,
		&yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key},
		&yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: value})
}

// Path is the config the bosh CLI uses: $BOSH_CONFIG, or ~/.bosh/config.
func Path(getenv func(string) string) (string, error) {
	if p := getenv("BOSH_CONFIG"); p != "" {
		return p, nil
	}
	home := getenv("HOME")
	if home == "" {
		h, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("find the bosh CLI's config: %w", err)
		}
		home = h
	}
	return filepath.Join(home, ".bosh", "config"), nil
}
