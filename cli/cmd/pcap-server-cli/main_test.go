package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cloudfoundry/pcap-server-release/cli/cfplugin"
)

// --token with --app-guid needs no cf login; only an API URL, which a cf
// target gives without a login.
func TestTokenAndGUIDNeedNoLogin(t *testing.T) {
	home := t.TempDir()
	t.Setenv("CF_HOME", home)
	t.Setenv("PCAP_API_URL", "")
	t.Setenv("PCAP_TOKEN", "")
	err := runStandalone(context.Background(), []string{"pcap", "app", "--token", "t", "--app-guid", "g"}, nil)
	if err == nil || !strings.Contains(err.Error(), "no API URL: pass --api-url") {
		t.Fatalf("without a cf config: %v", err)
	}
	if err := os.MkdirAll(filepath.Join(home, ".cf"), 0o700); err != nil {
		t.Fatal(err)
	}
	// Targeted but not logged in: the URL comes from the target.
	cfg := `{"ConfigVersion": 4, "Target": "https://api.sys.example.com"}`
	if err := os.WriteFile(filepath.Join(home, ".cf", "config.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := apiURLFromCfTarget()
	if err != nil || got != "https://pcap.sys.example.com" {
		t.Fatalf("API URL %q, %v", got, err)
	}
}

// `BIN PORT` with no command is a usage error, not a panic.
func TestPluginWithoutCommand(t *testing.T) {
	err := runPlugin(context.Background(), nil, nil, nil)
	var ee *cfplugin.ExitError
	if !errors.As(err, &ee) || ee.Code != 2 || !strings.Contains(err.Error(), "no command") {
		t.Fatalf("%v", err)
	}
}
