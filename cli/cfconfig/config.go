// Package cfconfig reads the cf CLI's config.json for the standalone mode of
// pcap-server-cli and keeps its access token fresh the way the cf CLI does:
// refresh at UAA when the token expires in less than a minute, then write
// the new tokens back without disturbing anything else in the file.
package cfconfig

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
)

// Version is the only ConfigVersion the current cf CLI reads; it ignores a
// file with any other version as if nobody had logged in.
const Version = 4

// DefaultUAAClient is the cf CLI's UAA client id when the file names none.
const DefaultUAAClient = "cf"

// Grant types the cf CLI writes to UAAGrantType. An empty value means a
// password login by an older cf CLI.
const (
	GrantPassword          = "password"
	GrantClientCredentials = "client_credentials"
)

// Config is the part of config.json this tool uses. JSON keys are the cf
// CLI's (note GUID in the targeted org and space, unlike the plugin RPC).
type Config struct {
	ConfigVersion         int                `json:"ConfigVersion"`
	Target                string             `json:"Target"`
	AuthorizationEndpoint string             `json:"AuthorizationEndpoint"`
	UaaEndpoint           string             `json:"UaaEndpoint"`
	AccessToken           string             `json:"AccessToken"`
	RefreshToken          string             `json:"RefreshToken"`
	UAAGrantType          string             `json:"UAAGrantType"`
	UAAOAuthClient        string             `json:"UAAOAuthClient"`
	UAAOAuthClientSecret  string             `json:"UAAOAuthClientSecret"`
	SSLDisabled           bool               `json:"SSLDisabled"`
	OrganizationFields    OrganizationFields `json:"OrganizationFields"`
	SpaceFields           SpaceFields        `json:"SpaceFields"`
	// Trace is `cf config --trace`: true or false, or a file to trace to.
	Trace string `json:"Trace"`
}

// OrganizationFields is the targeted org.
type OrganizationFields struct {
	GUID string `json:"GUID"`
	Name string `json:"Name"`
}

// SpaceFields is the targeted space.
type SpaceFields struct {
	GUID string `json:"GUID"`
	Name string `json:"Name"`
}

// Path returns where the cf CLI keeps config.json: $CF_HOME/.cf/config.json,
// else under the home directory as the cf CLI finds it: $HOME on Unix;
// %HOMEDRIVE%%HOMEPATH%, else %USERPROFILE% on Windows (never HOME, which
// Git Bash or Cygwin may set). getenv is os.Getenv outside tests.
func Path(getenv func(string) string) (string, error) {
	return pathFor(runtime.GOOS, getenv)
}

func pathFor(goos string, getenv func(string) string) (string, error) {
	home := getenv("CF_HOME")
	switch {
	case home != "":
	case goos == "windows":
		home = getenv("HOMEDRIVE") + getenv("HOMEPATH")
		if home == "" {
			home = getenv("USERPROFILE")
		}
	default:
		home = getenv("HOME")
	}
	if home == "" {
		return "", errors.New("find cf config: neither CF_HOME nor the home directory is set")
	}
	return filepath.Join(home, ".cf", "config.json"), nil
}

// Parse reads config.json. The file comes from outside this program, so
// anything but one JSON object with the cf CLI's value types is an error.
func Parse(data []byte) (Config, error) {
	if _, err := parseDocument(data); err != nil {
		return Config{}, err
	}
	var cfg Config
	if err := json.Unmarshal(data, &cfg); err != nil {
		return Config{}, fmt.Errorf("parse cf config: %w", err)
	}
	if cfg.UAAOAuthClient == "" {
		// As the cf CLI: no client means the default client and its empty secret.
		cfg.UAAOAuthClient = DefaultUAAClient
		cfg.UAAOAuthClientSecret = ""
	}
	return cfg, nil
}

// withTokens returns data with AccessToken and RefreshToken replaced and
// every other key, known or not, kept as it was and where it was.
func withTokens(data []byte, accessToken, refreshToken string) ([]byte, error) {
	doc, err := parseDocument(data)
	if err != nil {
		return nil, err
	}
	if err := doc.setString("AccessToken", accessToken); err != nil {
		return nil, err
	}
	if err := doc.setString("RefreshToken", refreshToken); err != nil {
		return nil, err
	}
	return doc.marshal()
}

// document is a JSON object kept as ordered raw members, so that writing
// it back changes only the members that were set.
type document struct {
	members []member
}

type member struct {
	key   string
	value json.RawMessage
}

func parseDocument(data []byte) (*document, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("parse cf config: %w", err)
	}
	if tok != json.Delim('{') {
		return nil, fmt.Errorf("parse cf config: want a JSON object, got %v", tok)
	}
	doc := &document{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("parse cf config: %w", err)
		}
		key, ok := tok.(string)
		if !ok {
			return nil, fmt.Errorf("parse cf config: want a key, got %v", tok)
		}
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return nil, fmt.Errorf("parse cf config: value of %q: %w", key, err)
		}
		doc.members = append(doc.members, member{key: key, value: value})
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("parse cf config: %w", err)
	}
	if _, err := dec.Token(); err == nil {
		return nil, errors.New("parse cf config: data after the JSON object")
	}
	return doc, nil
}

// setString sets key to s. encoding/json fills a field from any key equal
// to its name under case folding, the last one winning, so every such key
// gets the value; a missing key is added at the end.
func (d *document) setString(key, s string) error {
	value, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("encode %s: %w", key, err)
	}
	found := false
	for i := range d.members {
		if strings.EqualFold(d.members[i].key, key) {
			d.members[i].value = value
			found = true
		}
	}
	if !found {
		d.members = append(d.members, member{key: key, value: value})
	}
	return nil
}

// marshal writes the object indented by two spaces, as the cf CLI does.
func (d *document) marshal() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, m := range d.members {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("\n  ")
		key, err := json.Marshal(m.key)
		if err != nil {
			return nil, fmt.Errorf("encode key %q: %w", m.key, err)
		}
		b.Write(key)
		b.WriteString(": ")
		if err := json.Indent(&b, m.value, "  ", "  "); err != nil {
			return nil, fmt.Errorf("encode value of %q: %w", m.key, err)
		}
	}
	if len(d.members) > 0 {
		b.WriteByte('\n')
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}
