package boshconfig

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/cloudfoundry/pcap-server-release/cli/atomicfile"
	"github.com/cloudfoundry/pcap-server-release/cli/cfconfig"
	"github.com/cloudfoundry/pcap-server-release/cli/uaatoken"
)

// RefreshMargin: a token expiring sooner than this is refreshed first, so
// that it does not expire on its way to the API.
const RefreshMargin = time.Minute

// CLIClient is the UAA client the bosh CLI logs users in with; it has no
// secret.
const CLIClient = "bosh_cli"

// Options say which environment to log in to, and how.
type Options struct {
	// Path is the config file (Path(os.Getenv) for the bosh CLI's).
	Path string
	// Environment is -e or BOSH_ENVIRONMENT: an alias or a URL.
	Environment string
	// CACert is BOSH_CA_CERT: PEM, or the path of a PEM file. It replaces
	// the environment's ca_cert.
	CACert string
	// Client and ClientSecret are BOSH_CLIENT and BOSH_CLIENT_SECRET: a
	// client_credentials token instead of the config's user token.
	Client, ClientSecret string
	// Logger gets debug lines and warnings; nil discards them.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Session is a login to one director, for the bosh command.
type Session struct {
	path     string
	envURL   string // normalized
	client   string // BOSH_CLIENT, empty for the config's user
	secret   string
	http     *http.Client // trusts the environment's CA: for the director and its UAA
	log      *slog.Logger
	now      func() time.Time
	fromFile bool

	mu       sync.Mutex
	access   string
	refresh  string
	expires  time.Time // from the token endpoint, for tokens that are no JWT
	tokenURL string    // the director's UAA + /oauth/token, once found
}

// Open finds the environment in the config (a URL outside it will do with
// client credentials) and prepares the connection to its director.
func Open(o Options) (*Session, error) {
	s := &Session{path: o.Path, client: o.Client, secret: o.ClientSecret, log: o.Logger, now: o.Now}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if o.Environment == "" {
		return nil, errors.New("no environment: pass -e ALIAS (or a director URL), or set BOSH_ENVIRONMENT")
	}
	if o.Client != "" && o.ClientSecret == "" {
		return nil, errors.New("BOSH_CLIENT is set without BOSH_CLIENT_SECRET")
	}
	f, err := readFile(o.Path)
	if err != nil && !(errors.Is(err, fs.ErrNotExist) && o.Client != "") {
		return nil, err
	}
	var env Environment
	found := false
	if f != nil {
		env, found = f.Find(o.Environment)
	}
	switch {
	case found:
		s.envURL, _ = NormalizeURL(env.URL)
		s.access, s.refresh, s.fromFile = stripBearer(env.AccessToken), env.RefreshToken, o.Client == ""
	case o.Client != "":
		if s.envURL, err = NormalizeURL(o.Environment); err != nil {
			return nil, fmt.Errorf("environment %q is neither an alias in %s nor a director URL", o.Environment, o.Path)
		}
	default:
		return nil, fmt.Errorf("environment %q is not in %s: log in with `bosh -e %s log-in` (after `bosh alias-env`), or set BOSH_CLIENT and BOSH_CLIENT_SECRET", o.Environment, o.Path, o.Environment)
	}
	if o.Client != "" {
		// A client's token is fetched, never the file's user token.
		s.access, s.refresh = "", ""
	}
	caPEM := env.CACert
	if o.CACert != "" {
		if caPEM, err = readCACert(o.CACert); err != nil {
			return nil, err
		}
	}
	if s.http, err = httpClient(caPEM); err != nil {
		return nil, err
	}
	if s.fromFile && s.access == "" && s.refresh == "" {
		return nil, fmt.Errorf("not logged in to environment %s: run `bosh -e %s log-in`", o.Environment, o.Environment)
	}
	return s, nil
}

func readFile(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("no bosh CLI config at %s: log in with `bosh -e ENV log-in`, or set BOSH_CLIENT and BOSH_CLIENT_SECRET: %w", path, err)
		}
		return nil, fmt.Errorf("read the bosh CLI's config: %w", err)
	}
	f, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

// readCACert takes BOSH_CA_CERT as the bosh CLI does: PEM, or a file.
func readCACert(v string) (string, error) {
	if strings.Contains(v, "-----BEGIN") {
		return v, nil
	}
	data, err := os.ReadFile(v)
	if err != nil {
		return "", fmt.Errorf("BOSH_CA_CERT is neither PEM nor a readable file: %w", err)
	}
	return string(data), nil
}

// httpClient trusts caPEM, or the system roots without one.
func httpClient(caPEM string) (*http.Client, error) {
	t := http.DefaultTransport.(*http.Transport).Clone()
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caPEM != "" {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(caPEM)) {
			return nil, errors.New("the environment's CA certificate (ca_cert or BOSH_CA_CERT) holds no PEM certificate")
		}
		cfg.RootCAs = pool
	}
	t.TLSClientConfig = cfg
	return &http.Client{Transport: t, Timeout: 30 * time.Second}, nil
}

// Director is the environment's URL.
func (s *Session) Director() string { return s.envURL }

// Token returns an access token, without "bearer ", valid for at least
// RefreshMargin: the config's (refreshed and written back when it expires),
// or the client's.
func (s *Session) Token(ctx context.Context) (string, error) {
	return s.tokenOtherThan(ctx, "")
}

// Renew returns a token other than rejected, which the API refused
// although it has not expired (revoked, or signed with a retired key).
func (s *Session) Renew(ctx context.Context, rejected string) (string, error) {
	return s.tokenOtherThan(ctx, stripBearer(rejected))
}

func (s *Session) tokenOtherThan(ctx context.Context, rejected string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.freshLocked(); ok && t != rejected {
		return t, nil
	}
	if s.fromFile {
		// The bosh CLI, or another run, may have refreshed or logged in
		// since the file was read; its token saves a refresh.
		if f, err := readFile(s.path); err == nil {
			if env, ok := f.Find(s.envURL); ok {
				s.access, s.refresh = stripBearer(env.AccessToken), env.RefreshToken
			}
		}
		if t, ok := s.freshLocked(); ok && t != rejected {
			return t, nil
		}
	}
	return s.fetchLocked(ctx)
}

// freshLocked returns the token in hand if it stays valid long enough.
func (s *Session) freshLocked() (string, bool) {
	if s.access == "" {
		return "", false
	}
	expiry, err := cfconfig.TokenExpiry(s.access)
	if err != nil {
		if s.expires.IsZero() {
			return "", false
		}
		expiry = s.expires
	}
	return s.access, expiry.Sub(s.now()) >= RefreshMargin
}

// fetchLocked gets a new token at the director's UAA: the client's, or
// the user's by the refresh token, which is then written back.
func (s *Session) fetchLocked(ctx context.Context) (string, error) {
	tokenURL, err := s.tokenURLLocked(ctx)
	if err != nil {
		return "", err
	}
	form := url.Values{}
	client, secret := CLIClient, ""
	switch {
	case s.client != "":
		form.Set("grant_type", "client_credentials")
		client, secret = s.client, s.secret
	case s.refresh != "":
		form.Set("grant_type", "refresh_token")
		form.Set("refresh_token", s.refresh)
	default:
		return "", fmt.Errorf("the access token for %s has expired and %s holds no refresh token: run `bosh log-in` again", s.envURL, s.path)
	}
	reply, err := uaatoken.Request(ctx, s.http, tokenURL, form, client, secret)
	var refused *uaatoken.RefusedError
	switch {
	case errors.As(err, &refused) && s.client != "":
		return "", fmt.Errorf("the director's UAA refused client %s: %s: check BOSH_CLIENT and BOSH_CLIENT_SECRET", s.client, refused.Reason())
	case errors.As(err, &refused):
		return "", fmt.Errorf("the director's UAA refused to refresh the access token: %s: run `bosh log-in` again", refused.Reason())
	case err != nil:
		return "", err
	}
	oldAccess, oldRefresh := s.access, s.refresh
	s.access = reply.AccessToken
	if reply.RefreshToken != "" {
		s.refresh = reply.RefreshToken
	}
	s.expires = time.Time{}
	if reply.ExpiresIn > 0 {
		s.expires = s.now().Add(time.Duration(reply.ExpiresIn) * time.Second)
	}
	s.log.Debug("access token from the director's UAA", "uaa", tokenURL, "grant_type", form.Get("grant_type"), "expires_in", reply.ExpiresIn)
	if s.fromFile {
		// Good for this run even if the file cannot be updated.
		if err := s.writeBackLocked(oldAccess, oldRefresh); err != nil {
			s.log.Warn("could not save the refreshed token to the bosh config", "path", s.path, "error", err)
		}
	}
	return s.access, nil
}

// writeBackLocked saves the new tokens as the bosh CLI does, unless the
// file no longer holds the tokens that were refreshed: the bosh CLI wrote
// it meanwhile, and its content wins.
func (s *Session) writeBackLocked(oldAccess, oldRefresh string) error {
	return atomicfile.Update(s.path, "config-*", func(data []byte) ([]byte, error) {
		f, err := Parse(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.path, err)
		}
		if env, ok := f.Find(s.envURL); !ok || stripBearer(env.AccessToken) != oldAccess || env.RefreshToken != oldRefresh {
			s.log.Debug("bosh config changed since it was read; not saving the refreshed token", "path", s.path)
			return nil, nil
		}
		return f.WithTokens(s.envURL, s.access, s.refresh)
	})
}

// tokenURLLocked finds the director's UAA through its /info, once.
func (s *Session) tokenURLLocked(ctx context.Context) (string, error) {
	if s.tokenURL != "" {
		return s.tokenURL, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.envURL+"/info", nil)
	if err != nil {
		return "", err
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return "", fmt.Errorf("ask the director %s where its UAA is: %w", s.envURL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxFileBytes))
	if err != nil || resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("ask the director %s where its UAA is: %s %v", s.envURL, resp.Status, err)
	}
	var info struct {
		UserAuthentication struct {
			Type    string `json:"type"`
			Options struct {
				URL string `json:"url"`
			} `json:"options"`
		} `json:"user_authentication"`
	}
	if err := json.Unmarshal(body, &info); err != nil {
		return "", fmt.Errorf("the director's /info: %w", err)
	}
	ua := info.UserAuthentication
	if ua.Type != "uaa" || ua.Options.URL == "" {
		return "", fmt.Errorf("the director %s does not authenticate with UAA (user_authentication type %q), which pcap-server needs", s.envURL, ua.Type)
	}
	s.tokenURL = strings.TrimRight(ua.Options.URL, "/") + "/oauth/token"
	return s.tokenURL, nil
}

// stripBearer removes the scheme the config may keep in front of a token.
func stripBearer(token string) string {
	token = strings.TrimSpace(token)
	if len(token) > 7 && strings.EqualFold(token[:7], "bearer ") {
		return strings.TrimSpace(token[7:])
	}
	return token
}
