package cfconfig

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/cloudfoundry/pcap-server-release/cli/atomicfile"
	"github.com/cloudfoundry/pcap-server-release/cli/uaatoken"
)

// RefreshMargin: a token expiring sooner than this is refreshed first, as
// the cf CLI does, so it does not expire on its way to the API.
const RefreshMargin = time.Minute

// Options configure Load.
type Options struct {
	// HTTPClient makes the UAA call; nil means a client with a 30 s timeout.
	// When the config has SSLDisabled, a copy whose *http.Transport skips
	// certificate verification is used for UAA only.
	HTTPClient *http.Client
	// Logger receives debug and warning lines; nil discards them.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Store is a loaded cf config. Its methods are safe for concurrent use.
type Store struct {
	path       string
	baseClient *http.Client
	log        *slog.Logger
	now        func() time.Time

	mu     sync.Mutex
	cfg    Config
	uaa    *http.Client
	issued issuedToken
}

// issuedToken remembers expires_in for a token this Store got from UAA, for
// the case that the token is not a JWT whose exp can be read.
type issuedToken struct {
	token     string
	expiresAt time.Time
}

// LoadDefault loads the config.json the cf CLI uses (see Path).
func LoadDefault(opts Options) (*Store, error) {
	path, err := Path(os.Getenv)
	if err != nil {
		return nil, err
	}
	return Load(path, opts)
}

// Load reads the cf config at path. A missing file, or one the cf CLI
// would ignore for its ConfigVersion, is ErrNotLoggedIn.
func Load(path string, opts Options) (*Store, error) {
	s := &Store{
		path:       path,
		baseClient: opts.HTTPClient,
		log:        opts.Logger,
		now:        opts.Now,
	}
	if s.baseClient == nil {
		s.baseClient = &http.Client{Timeout: 30 * time.Second}
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	cfg, err := readConfig(path)
	if err != nil {
		return nil, err
	}
	s.setConfigLocked(cfg)
	return s, nil
}

func readConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Config{}, fmt.Errorf("%w (no cf config at %s)", ErrNotLoggedIn, path)
	}
	if err != nil {
		return Config{}, fmt.Errorf("read cf config: %w", err)
	}
	cfg, err := Parse(data)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	if cfg.ConfigVersion != Version {
		return Config{}, fmt.Errorf("%w (%s has ConfigVersion %d; the cf CLI reads only version %d)", ErrNotLoggedIn, path, cfg.ConfigVersion, Version)
	}
	return cfg, nil
}

func (s *Store) setConfigLocked(cfg Config) {
	if s.uaa == nil || cfg.SSLDisabled != s.cfg.SSLDisabled {
		s.uaa = uaaClient(s.baseClient, cfg.SSLDisabled, s.log)
	}
	s.cfg = cfg
}

// uaaClient applies SSLDisabled (`cf api --skip-ssl-validation`) to a copy
// of base; the caller's client stays as it was.
func uaaClient(base *http.Client, sslDisabled bool, log *slog.Logger) *http.Client {
	if !sslDisabled {
		return base
	}
	var tr *http.Transport
	switch t := base.Transport.(type) {
	case nil:
		tr = http.DefaultTransport.(*http.Transport).Clone()
	case *http.Transport:
		tr = t.Clone()
	default:
		log.Warn("cf config has SSLDisabled but the HTTP transport is not an *http.Transport; UAA's certificate stays verified")
		return base
	}
	if tr.TLSClientConfig == nil {
		tr.TLSClientConfig = &tls.Config{}
	}
	// The user asked for this with `cf api --skip-ssl-validation`.
	tr.TLSClientConfig.InsecureSkipVerify = true
	c := *base
	c.Transport = tr
	return &c
}

// Path is the file this Store reads and writes.
func (s *Store) Path() string { return s.path }

// Config returns the config as last read or refreshed.
func (s *Store) Config() Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg
}

// Target returns the Cloud Controller URL the cf CLI targets.
func (s *Store) Target() (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cfg.Target == "" {
		return "", ErrNoTarget
	}
	if s.cfg.AccessToken == "" {
		return "", s.notLoggedInLocked()
	}
	return s.cfg.Target, nil
}

// Space returns the targeted space.
func (s *Store) Space() (SpaceFields, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cfg.AccessToken == "" {
		return SpaceFields{}, s.notLoggedInLocked()
	}
	if s.cfg.SpaceFields.GUID == "" {
		return SpaceFields{}, ErrNoSpace
	}
	return s.cfg.SpaceFields, nil
}

func (s *Store) notLoggedInLocked() error {
	return fmt.Errorf("%w (no access token in %s)", ErrNotLoggedIn, s.path)
}

// Token returns an access token, without the "bearer " prefix, that is
// valid for at least RefreshMargin. Call it before each request and after a
// 401. An expiring token is refreshed at UAA and the new tokens are written
// back to the file.
func (s *Store) Token(ctx context.Context) (string, error) {
	return s.tokenOtherThan(ctx, "")
}

// Renew returns a token other than rejected, which a server refused
// although its expiry says it is still valid (revoked, or signed by a key
// UAA has rotated out): the token in the file if the cf CLI wrote a new
// one meanwhile, else one refreshed at UAA and written back.
func (s *Store) Renew(ctx context.Context, rejected string) (string, error) {
	return s.tokenOtherThan(ctx, stripBearer(rejected))
}

// tokenOtherThan is Token when rejected is empty.
func (s *Store) tokenOtherThan(ctx context.Context, rejected string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if token, ok := s.freshTokenLocked(); ok && token != rejected {
		return token, nil
	}
	// The cf CLI, or another run of this tool, may have refreshed or logged
	// in since the file was read; its token saves a refresh.
	cfg, err := readConfig(s.path)
	if err != nil {
		return "", err
	}
	s.setConfigLocked(cfg)
	if s.cfg.AccessToken == "" {
		return "", s.notLoggedInLocked()
	}
	if token, ok := s.freshTokenLocked(); ok && token != rejected {
		return token, nil
	}
	return s.refreshLocked(ctx)
}

// freshTokenLocked returns the stored token if it stays valid long enough.
func (s *Store) freshTokenLocked() (string, bool) {
	token := stripBearer(s.cfg.AccessToken)
	if token == "" {
		return "", false
	}
	expiry, err := TokenExpiry(token)
	if err != nil {
		if token != s.issued.token {
			s.log.Debug("cannot read the access token's expiry; refreshing", "error", err)
			return "", false
		}
		expiry = s.issued.expiresAt
	}
	return token, expiry.Sub(s.now()) >= RefreshMargin
}

func (s *Store) refreshLocked(ctx context.Context) (string, error) {
	cfg := s.cfg
	form := url.Values{}
	switch {
	case cfg.RefreshToken != "":
		form.Set("grant_type", "refresh_token")
		form.Set("refresh_token", cfg.RefreshToken)
		form.Set("scope", "")
	case cfg.UAAGrantType == GrantClientCredentials && cfg.UAAOAuthClientSecret != "":
		// `cf auth --client-credentials` keeps the client secret and no
		// refresh token; the cf CLI asks for a new client token instead.
		form.Set("grant_type", GrantClientCredentials)
	case cfg.UAAGrantType == GrantClientCredentials:
		return "", fmt.Errorf("%w: the cf CLI logged in with client credentials and %s holds neither a refresh token nor the client secret: run `cf auth CLIENT_ID CLIENT_SECRET --client-credentials`", ErrCannotRefresh, s.path)
	default:
		return "", fmt.Errorf("%w: no refresh token in %s: run `cf login`", ErrCannotRefresh, s.path)
	}

	base := cfg.AuthorizationEndpoint
	if base == "" {
		base = cfg.UaaEndpoint
	}
	if base == "" {
		return "", fmt.Errorf("%w: %s names no AuthorizationEndpoint: run `cf login`", ErrCannotRefresh, s.path)
	}
	tokenURL := strings.TrimRight(base, "/") + "/oauth/token"

	reply, err := uaatoken.Request(ctx, s.uaa, tokenURL, form, cfg.UAAOAuthClient, cfg.UAAOAuthClientSecret)
	var refused *uaatoken.RefusedError
	if errors.As(err, &refused) {
		return "", &RefreshError{StatusCode: refused.StatusCode, Code: refused.Code, Description: refused.Description}
	}
	if err != nil {
		return "", err
	}

	oldAccess, oldRefresh := cfg.AccessToken, cfg.RefreshToken
	s.cfg.AccessToken = "bearer " + reply.AccessToken
	if reply.RefreshToken != "" {
		s.cfg.RefreshToken = reply.RefreshToken
	}
	s.issued = issuedToken{token: reply.AccessToken}
	if reply.ExpiresIn > 0 {
		s.issued.expiresAt = s.now().Add(time.Duration(reply.ExpiresIn) * time.Second)
	}
	s.log.Debug("refreshed access token", "uaa", tokenURL, "grant_type", form.Get("grant_type"), "expires_in", reply.ExpiresIn)

	// The token is good for this run even if the file cannot be updated,
	// so a write failure is a warning, not an error.
	if err := s.writeBackLocked(oldAccess, oldRefresh); err != nil {
		s.log.Warn("could not save the refreshed token to the cf config", "path", s.path, "error", err)
	}
	return reply.AccessToken, nil
}

// writeBackLocked saves the new tokens, unless the file no longer holds the
// tokens that were refreshed: then the cf CLI wrote it meanwhile (a login,
// a refresh of its own) and its content wins.
func (s *Store) writeBackLocked(oldAccess, oldRefresh string) error {
	// The temporary name matches the cf CLI's "temp-config*", which the cf
	// CLI cleans up if a crash leaves one behind.
	return atomicfile.Update(s.path, "temp-config", func(data []byte) ([]byte, error) {
		current, err := Parse(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.path, err)
		}
		if current.AccessToken != oldAccess || current.RefreshToken != oldRefresh {
			s.log.Debug("cf config changed since it was read; not saving the refreshed token", "path", s.path)
			return nil, nil
		}
		return withTokens(data, s.cfg.AccessToken, s.cfg.RefreshToken)
	})
}
