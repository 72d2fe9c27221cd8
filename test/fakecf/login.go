package fakecf

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/cloudfoundry/pcap-server-release/cli/cfconfig"
)

// Login is a cf CLI's login as its config.json holds it.
type Login struct {
	// AccessToken is a JWT, without "bearer ".
	AccessToken  string
	RefreshToken string
	// TokenURL is where the cf CLI refreshes: its login link (config
	// AuthorizationEndpoint) plus /oauth/token.
	TokenURL string
	// HTTPClient reaches UAA; nil means http.DefaultClient.
	HTTPClient *http.Client
	// ConfigPath, if set, is a cf config.json whose AccessToken and
	// RefreshToken a refresh rewrites, as the cf CLI does.
	ConfigPath string
}

// refreshMargin: the cf CLI refreshes a token that expires sooner.
const refreshMargin = time.Minute

// refreshTimeout bounds the fake's call to UAA.
const refreshTimeout = 30 * time.Second

// errRefreshRefused is the cf CLI's answer when UAA refuses the refresh.
var errRefreshRefused = errors.New("The token expired, was revoked, or the token ID is incorrect. Please log back in to re-authenticate.")

// loginTokenLocked is the real cf CLI's AccessToken: the cached token
// while it has a minute or more left, else a refreshed one (refresh_token
// grant, client cf with an empty secret), kept and written to the config.
// c.mu is held, as the cf CLI serializes its config.
func (c *CLI) loginTokenLocked(token *string) error {
	l := *c.state.Login
	exp, err := cfconfig.TokenExpiry(l.AccessToken)
	if err != nil {
		// The cf CLI's JWT parser, for an empty or malformed token.
		return errors.New("not a compact JWS")
	}
	if time.Until(exp) >= refreshMargin {
		*token = "bearer " + l.AccessToken
		return nil
	}
	fresh, err := refresh(l)
	if err != nil {
		c.log.Debug("fake cf CLI: refresh refused", "error", err)
		return errRefreshRefused
	}
	c.refreshes++
	l.AccessToken, l.RefreshToken = fresh.AccessToken, fresh.RefreshToken
	c.state.Login = &l
	if l.ConfigPath != "" {
		if err := writeTokens(l.ConfigPath, l); err != nil {
			return err
		}
	}
	*token = "bearer " + l.AccessToken
	return nil
}

type tokenReply struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
}

func refresh(l Login) (tokenReply, error) {
	ctx, cancel := context.WithTimeout(context.Background(), refreshTimeout)
	defer cancel()
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {l.RefreshToken}, "scope": {""}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, l.TokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return tokenReply{}, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.SetBasicAuth("cf", "")
	client := l.HTTPClient
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return tokenReply{}, fmt.Errorf("refresh at %s: %w", l.TokenURL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return tokenReply{}, fmt.Errorf("refresh at %s: %w", l.TokenURL, err)
	}
	if resp.StatusCode != http.StatusOK {
		return tokenReply{}, fmt.Errorf("refresh at %s: %s: %s", l.TokenURL, resp.Status, body)
	}
	var reply tokenReply
	if err := json.Unmarshal(body, &reply); err != nil || reply.AccessToken == "" {
		return tokenReply{}, fmt.Errorf("refresh at %s: no access_token in %s", l.TokenURL, body)
	}
	if reply.RefreshToken == "" {
		reply.RefreshToken = l.RefreshToken
	}
	return reply, nil
}

// writeTokens puts the login's tokens into the config at path, keeping
// its other keys.
func writeTokens(path string, l Login) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("fake cf CLI: %w", err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(data, &cfg); err != nil {
		return fmt.Errorf("fake cf CLI: %s: %w", path, err)
	}
	cfg["AccessToken"] = "bearer " + l.AccessToken
	cfg["RefreshToken"] = l.RefreshToken
	out, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return fmt.Errorf("fake cf CLI: %w", err)
	}
	if err := os.WriteFile(path, out, 0o600); err != nil {
		return fmt.Errorf("fake cf CLI: %w", err)
	}
	return nil
}

// Refreshes counts the tokens the fake refreshed at UAA for a Login.
func (c *CLI) Refreshes() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.refreshes
}
