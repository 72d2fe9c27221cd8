package boshconfig

import (
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/cloudfoundry/pcap-server-release/test/fuzzcorpus"
)

// sampleConfig is a bosh CLI config as the bosh CLI writes it, with keys
// pcap-server does not read (basic auth, a key of a future version).
const sampleConfig = `environments:
- url: https://10.0.0.6:25555
  ca_cert: |-
    -----BEGIN CERTIFICATE-----
    MIIB
    -----END CERTIFICATE-----
  alias: prod
  access_token: eyJhbGciOiJSUzI1NiJ9.eyJleHAiOjF9.c2ln
  access_token_type: bearer
  refresh_token: refresh-1
- url: https://192.168.50.6:25555
  alias: vbox
  username: admin
  password: secret
future_key: {kept: true}
`

func TestParseAndFind(t *testing.T) {
	f, err := Parse([]byte(sampleConfig))
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Environments) != 2 || f.Environments[0].RefreshToken != "refresh-1" || !strings.Contains(f.Environments[0].CACert, "MIIB") {
		t.Fatalf("%+v", f.Environments)
	}
	for _, name := range []string{"prod", "https://10.0.0.6:25555", "10.0.0.6", "10.0.0.6:25555", "https://10.0.0.6:25555/"} {
		if e, ok := f.Find(name); !ok || e.Alias != "prod" {
			t.Errorf("Find(%q) = %+v, %v", name, e, ok)
		}
	}
	for _, name := range []string{"staging", "10.0.0.7", "https://10.0.0.6:8443", ""} {
		if e, ok := f.Find(name); ok {
			t.Errorf("Find(%q) = %+v", name, e)
		}
	}
	for _, bad := range []string{"environments: [{alias: x}]", "- a\n- b\n", "environments: {url: x}", "{"} {
		if _, err := Parse([]byte(bad)); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
	if f, err := Parse(nil); err != nil || len(f.Environments) != 0 {
		t.Errorf("an empty file: %+v, %v", f, err)
	}
}

// A write-back replaces one environment's tokens and keeps every other
// key, of that environment, of the others and of the file.
func TestWithTokensKeepsTheRest(t *testing.T) {
	f, err := Parse([]byte(sampleConfig))
	if err != nil {
		t.Fatal(err)
	}
	out, err := f.WithTokens("10.0.0.6", "new-access", "new-refresh")
	if err != nil {
		t.Fatal(err)
	}
	var back struct {
		Environments []map[string]any `yaml:"environments"`
		FutureKey    map[string]any   `yaml:"future_key"`
	}
	if err := yaml.Unmarshal(out, &back); err != nil {
		t.Fatal(err)
	}
	prod, vbox := back.Environments[0], back.Environments[1]
	if prod["access_token"] != "new-access" || prod["refresh_token"] != "new-refresh" || prod["access_token_type"] != "bearer" ||
		!strings.Contains(prod["ca_cert"].(string), "MIIB") || prod["alias"] != "prod" {
		t.Errorf("prod %v", prod)
	}
	if vbox["password"] != "secret" || vbox["access_token"] != nil || back.FutureKey["kept"] != true {
		t.Errorf("the rest: %v %v", vbox, back.FutureKey)
	}
	if _, err := f.WithTokens("https://10.9.9.9", "a", "r"); err == nil {
		t.Error("an unknown environment got tokens")
	}
}

func TestPath(t *testing.T) {
	env := map[string]string{"HOME": "/home/ops"}
	getenv := func(k string) string { return env[k] }
	if p, _ := Path(getenv); p != "/home/ops/.bosh/config" {
		t.Errorf("%s", p)
	}
	env["BOSH_CONFIG"] = "/tmp/bosh-config"
	if p, _ := Path(getenv); p != "/tmp/bosh-config" {
		t.Errorf("%s", p)
	}
}

// parseSeeds are configs as they come: the bosh CLI's, an empty one, odd
// YAML (aliases, anchors, documents), and broken ones.
func parseSeeds() []string {
	return []string{
		sampleConfig,
		"",
		"environments: []\n",
		"environments:\n- url: 10.0.0.6\n  alias: short\n",
		"a: &x [*x]\n",
		"environments: [{url: 'https://[::1]:25555', alias: v6}]\n---\nsecond: doc\n",
		"environments:\n- url: https://x\n  access_token: !!binary aGVsbG8=\n",
		"\x00\xff{",
		// A block scalar the YAML encoder writes back unreadable: the
		// write-back must notice and not write.
		"environments:\n- url: |\n\n   00",
	}
}

func TestSeedCorpus(t *testing.T) {
	var seeds []any
	for _, s := range parseSeeds() {
		seeds = append(seeds, []byte(s))
	}
	fuzzcorpus.Check(t, "FuzzParse", seeds...)
}

// FuzzParse feeds configs from anywhere: no panic, every environment it
// accepts has a URL, and a write-back of one it finds parses again to the
// same environments but for the tokens.
func FuzzParse(f *testing.F) {
	for _, s := range parseSeeds() {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data)
		if err != nil {
			return
		}
		for _, e := range cfg.Environments {
			if e.URL == "" {
				t.Fatal("an environment without a URL accepted")
			}
		}
		if len(cfg.Environments) == 0 {
			return
		}
		e := cfg.Environments[0]
		if _, err := NormalizeURL(e.URL); err != nil {
			return
		}
		out, err := cfg.WithTokens(e.URL, "access", "refresh")
		if err != nil {
			return
		}
		again, err := Parse(out)
		if err != nil {
			t.Fatalf("a write-back does not parse: %v\n%s", err, out)
		}
		if len(again.Environments) != len(cfg.Environments) {
			t.Fatalf("%d environments after a write-back, %d before", len(again.Environments), len(cfg.Environments))
		}
		got, ok := again.Find(e.URL)
		if !ok || got.AccessToken != "access" || got.RefreshToken != "refresh" || got.CACert != e.CACert {
			t.Fatalf("written back %+v, from %+v", got, e)
		}
	})
}
