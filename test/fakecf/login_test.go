package fakecf_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloudfoundry/pcap-server-release/test/fakecf"
	"github.com/cloudfoundry/pcap-server-release/test/fakeuaa"
)

// As the real cf CLI 9: AccessToken answers the cached token while it
// has a minute or more left, and refreshes at UAA (writing config.json)
// only when it has less.
func TestAccessTokenAsTheRealCfCLI(t *testing.T) {
	uaa := fakeuaa.New(t)
	cfg := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(cfg, []byte(`{"ConfigVersion": 4, "AccessToken": "bearer old", "ColorEnabled": "true"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	long := uaa.UserToken("dev-user")
	login := &fakecf.Login{AccessToken: long, RefreshToken: uaa.RefreshToken("dev-user"),
		TokenURL: uaa.URL + "/oauth/token", HTTPClient: uaa.Client(), ConfigPath: cfg}
	cli := start(t, fakecf.State{Login: login})
	client := dial(t, cli)
	token := func() (string, error) {
		var tok string
		err := client.Call("CliRpcCmd.AccessToken", "", &tok)
		return tok, err
	}
	for range 2 {
		if got, err := token(); err != nil || got != "bearer "+long {
			t.Fatalf("a token with an hour left: %q, %v", got, err)
		}
	}
	if n := uaa.Requests(fakeuaa.PostToken); n != 0 {
		t.Fatalf("%d refreshes of a token with an hour left", n)
	}

	short := uaa.UserToken("dev-user", fakeuaa.ExpiresAt(time.Now().Add(59*time.Second)))
	cli.SetState(fakecf.State{Login: &fakecf.Login{AccessToken: short, RefreshToken: login.RefreshToken,
		TokenURL: login.TokenURL, HTTPClient: uaa.Client(), ConfigPath: cfg}})
	fresh, err := token()
	if err != nil || fresh == "bearer "+short || !strings.HasPrefix(fresh, "bearer ey") {
		t.Fatalf("a token with 59 s left: %q, %v", fresh, err)
	}
	if again, _ := token(); again != fresh {
		t.Fatalf("the refreshed token was not kept: %q then %q", fresh, again)
	}
	if n := uaa.Requests(fakeuaa.PostToken); n != 1 || cli.Refreshes() != 1 {
		t.Fatalf("%d refreshes at UAA (fake counts %d), want 1", n, cli.Refreshes())
	}
	var saved map[string]any
	data, _ := os.ReadFile(cfg)
	if err := json.Unmarshal(data, &saved); err != nil || saved["AccessToken"] != fresh || saved["ColorEnabled"] != "true" {
		t.Fatalf("config.json after the refresh: %s", data)
	}

	// UAA refuses the refresh: the cf CLI's message.
	cli.SetState(fakecf.State{Login: &fakecf.Login{AccessToken: short, RefreshToken: "revoked",
		TokenURL: login.TokenURL, HTTPClient: uaa.Client()}})
	if _, err := token(); err == nil || !strings.Contains(err.Error(), "Please log back in") {
		t.Fatalf("refused refresh: %v", err)
	}
	// No token at all.
	cli.SetState(fakecf.State{Login: &fakecf.Login{}})
	if _, err := token(); err == nil || !strings.Contains(err.Error(), "not a compact JWS") {
		t.Fatalf("no token: %v", err)
	}
}
