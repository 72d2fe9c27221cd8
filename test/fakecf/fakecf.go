// Package fakecf plays the cf CLI for plugin tests: it serves the cf CLI's
// plugin RPC service ("CliRpcCmd", net/rpc with gob over TCP on 127.0.0.1)
// with the real method names and reply shapes, records every call, and
// starts plugin binaries the way cf does (`BIN PORT SendMetadata`,
// `BIN PORT COMMAND ARGS...`, `BIN PORT CLI-MESSAGE-UNINSTALL`).
package fakecf

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/rpc"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/cloudfoundry/pcap-server-release/cli/cfplugin"
)

// State is what the fake cf CLI knows about its user. Change it between
// calls with CLI.SetState.
type State struct {
	// APIEndpoint is the config Target, returned by ApiEndpoint.
	APIEndpoint string
	LoggedIn    bool
	SSLDisabled bool
	SpaceGUID   string
	SpaceName   string
	OrgGUID     string
	OrgName     string
	Username    string
	UserGUID    string
	// Login, when set, makes AccessToken answer as the real cf CLI does:
	// the cached token until it is within a minute of its expiry, then one
	// refreshed at UAA. It takes precedence over AccessTokens.
	Login *Login
	// AccessTokens are handed out in order, one per AccessToken call; the
	// last one repeats. Each is sent as TokenType + " " + token, the way
	// the cf CLI stores it. This is a script for protocol tests, not what
	// a real cf CLI does (see Login): it hands out a new token only when
	// the old one is about to expire.
	AccessTokens []string
	// TokenType defaults to "bearer".
	TokenType string
	// AccessTokenError, if set, is the error AccessToken returns, as the
	// cf CLI does when UAA refuses the refresh.
	AccessTokenError string
	// CLIVersion is the version IsMinCliVersion compares against; default
	// "8.9.0".
	CLIVersion string
	// RejectMetadata makes SetPluginMetadata answer false.
	RejectMetadata bool
}

// PingMethod names a ping (a connection closed without an RPC) in Calls.
const PingMethod = "<ping>"

// Call is one recorded event: an RPC, or a ping.
type Call struct {
	// Conn numbers the TCP connection in accept order, from 1.
	Conn   int
	Method string
	Arg    any
}

// CLI is a running fake cf CLI.
type CLI struct {
	listener     net.Listener
	log          *slog.Logger
	stopOnCancel func() bool

	wg      sync.WaitGroup
	connsMu sync.Mutex
	conns   map[net.Conn]struct{}
	closed  bool
	dialled int

	mu        sync.Mutex
	changed   chan struct{}
	state     State
	calls     []Call
	tokenNext int
	metadata  *cfplugin.PluginMetadata
	installed []cfplugin.PluginMetadata
	env       []string
	refreshes int
}

// Options configure Start.
type Options struct {
	State State
	// Env is added to the environment of plugin binaries it starts.
	Env []string
	// Logger receives debug lines about connections; nil discards them.
	Logger *slog.Logger
}

// Start listens on 127.0.0.1:0 and serves until Close or until ctx ends.
func Start(ctx context.Context, opts Options) (*CLI, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("fake cf CLI: listen: %w", err)
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	c := &CLI{
		listener: ln,
		log:      logger,
		conns:    make(map[net.Conn]struct{}),
		changed:  make(chan struct{}),
		state:    opts.State,
		env:      slices.Clone(opts.Env),
	}
	// Fail at Start, not on the first connection, if the service is malformed.
	if err := rpc.NewServer().RegisterName(cfplugin.ServiceName, &Service{cli: c}); err != nil {
		ln.Close()
		return nil, fmt.Errorf("fake cf CLI: register %s: %w", cfplugin.ServiceName, err)
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.acceptLoop()
	}()
	c.stopOnCancel = context.AfterFunc(ctx, c.shutdown)
	return c, nil
}

// Port is the RPC port the plugin gets as argv[1].
func (c *CLI) Port() int { return c.listener.Addr().(*net.TCPAddr).Port }

// Close stops serving, drops open connections and waits for every
// goroutine of the fake to end.
func (c *CLI) Close() error {
	c.stopOnCancel()
	c.shutdown()
	c.wg.Wait()
	return nil
}

func (c *CLI) shutdown() {
	c.connsMu.Lock()
	defer c.connsMu.Unlock()
	if c.closed {
		return
	}
	c.closed = true
	c.listener.Close()
	for conn := range c.conns {
		conn.Close()
	}
}

func (c *CLI) acceptLoop() {
	for {
		conn, err := c.listener.Accept()
		if err != nil {
			return
		}
		seq, ok := c.track(conn)
		if !ok {
			conn.Close()
			return
		}
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			defer c.untrack(conn)
			c.serve(seq, conn)
		}()
	}
}

// track registers conn and numbers it in accept order.
func (c *CLI) track(conn net.Conn) (int, bool) {
	c.connsMu.Lock()
	defer c.connsMu.Unlock()
	if c.closed {
		return 0, false
	}
	c.conns[conn] = struct{}{}
	c.dialled++
	return c.dialled, true
}

func (c *CLI) untrack(conn net.Conn) {
	c.connsMu.Lock()
	defer c.connsMu.Unlock()
	delete(c.conns, conn)
	conn.Close()
}

// bufferedConn lets the server peek at the first byte and still hand every
// byte to net/rpc.
type bufferedConn struct {
	*bufio.Reader
	net.Conn
}

func (b bufferedConn) Read(p []byte) (int, error) { return b.Reader.Read(p) }

// serve tells a ping (connect, close, no bytes) from an RPC connection, as
// the cf CLI's server must accept both on the same port.
//
// Each connection gets its own rpc.Server so that calls are recorded with
// the connection's number: goroutines may record out of order, but the
// accept order is the order in which the plugin dialled.
func (c *CLI) serve(seq int, conn net.Conn) {
	r := bufio.NewReader(conn)
	if _, err := r.Peek(1); err != nil {
		if errors.Is(err, io.EOF) {
			c.mu.Lock()
			c.recordLocked(Call{Conn: seq, Method: PingMethod})
			c.mu.Unlock()
			c.log.Debug("fake cf CLI: ping", "conn", seq)
		}
		return
	}
	server := rpc.NewServer()
	if err := server.RegisterName(cfplugin.ServiceName, &Service{cli: c, conn: seq}); err != nil {
		c.log.Error("fake cf CLI: register service", "error", err)
		return
	}
	server.ServeConn(bufferedConn{Reader: r, Conn: conn})
}

// recordLocked appends a call and wakes WaitCalls; c.mu must be held.
func (c *CLI) recordLocked(call Call) {
	c.calls = append(c.calls, call)
	close(c.changed)
	c.changed = make(chan struct{})
}

// WaitCalls waits until method was called at least n times. A ping is
// recorded when the plugin's connection closes, which may be after the
// plugin exited; tests that look for pings wait here first.
func (c *CLI) WaitCalls(ctx context.Context, method string, n int) error {
	for {
		c.mu.Lock()
		count := 0
		for _, call := range c.calls {
			if call.Method == method {
				count++
			}
		}
		changed := c.changed
		c.mu.Unlock()
		if count >= n {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("wait for %d %s calls (saw %d): %w", n, method, count, ctx.Err())
		}
	}
}

// SetState replaces what the fake reports and restarts the token sequence.
func (c *CLI) SetState(s State) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.state = s
	c.tokenNext = 0
}

// SetEnv replaces the extra environment of plugin binaries started later.
func (c *CLI) SetEnv(env []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.env = slices.Clone(env)
}

// Calls returns every recorded event in order.
func (c *CLI) Calls() []Call {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.calls)
}

// Connections counts the TCP connections accepted so far, pings included.
// The cf CLI's clients open one per RPC.
func (c *CLI) Connections() int {
	c.connsMu.Lock()
	defer c.connsMu.Unlock()
	return c.dialled
}

// Methods returns the recorded method names in order (pings included).
func (c *CLI) Methods() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	names := make([]string, len(c.calls))
	for i, call := range c.calls {
		names[i] = call.Method
	}
	return names
}

// RPCs returns the recorded RPC method names in call order, without pings.
func (c *CLI) RPCs() []string {
	var names []string
	for _, call := range c.Calls() {
		if call.Method != PingMethod {
			names = append(names, call.Method)
		}
	}
	return names
}

// CallCount counts recorded calls of method.
func (c *CLI) CallCount(method string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, call := range c.calls {
		if call.Method == method {
			n++
		}
	}
	return n
}

// ResetCalls forgets the recorded calls.
func (c *CLI) ResetCalls() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = nil
}

// Metadata is the metadata most recently received by SetPluginMetadata.
func (c *CLI) Metadata() (cfplugin.PluginMetadata, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.metadata == nil {
		return cfplugin.PluginMetadata{}, false
	}
	return *c.metadata, true
}

// Service is the RPC receiver registered as "CliRpcCmd". Its methods are the
// cf CLI's, with the cf CLI's argument and reply types.
type Service struct {
	cli  *CLI
	conn int
}

// snapshot records the call and returns the state to answer from.
func (s *Service) snapshot(method string, arg any) State {
	c := s.cli
	c.mu.Lock()
	defer c.mu.Unlock()
	c.recordLocked(Call{Conn: s.conn, Method: method, Arg: arg})
	return c.state
}

// SetPluginMetadata stores the plugin's metadata.
func (s *Service) SetPluginMetadata(meta PluginMetadata, accepted *bool) error {
	state := s.snapshot("SetPluginMetadata", meta)
	converted := toCfpluginMetadata(meta)
	c := s.cli
	c.mu.Lock()
	c.metadata = &converted
	c.mu.Unlock()
	*accepted = !state.RejectMetadata
	return nil
}

// IsMinCliVersion compares the plugin's minimum with State.CLIVersion.
func (s *Service) IsMinCliVersion(version string, ok *bool) error {
	state := s.snapshot("IsMinCliVersion", version)
	running := state.CLIVersion
	if running == "" {
		running = "8.9.0"
	}
	have, err := parseVersion(running)
	if err != nil {
		return err
	}
	want, err := parseVersion(version)
	if err != nil {
		return err
	}
	*ok = slices.Compare(have, want) >= 0
	return nil
}

// parseVersion reads "M.m.b" strictly, as the cf CLI's semver.Make does for
// this input.
func parseVersion(v string) ([]int, error) {
	parts := strings.Split(v, ".")
	if len(parts) != 3 {
		return nil, fmt.Errorf("No Major.Minor.Patch elements found")
	}
	nums := make([]int, 3)
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("Invalid character(s) found in version %q", v)
		}
		nums[i] = n
	}
	return nums, nil
}

// AccessToken hands out the login's token (see Login), or the next
// scripted one, as "bearer <jwt>".
func (s *Service) AccessToken(_ string, token *string) error {
	c := s.cli
	c.mu.Lock()
	defer c.mu.Unlock()
	c.recordLocked(Call{Conn: s.conn, Method: "AccessToken", Arg: ""})
	if c.state.AccessTokenError != "" {
		return errors.New(c.state.AccessTokenError)
	}
	if c.state.Login != nil {
		return c.loginTokenLocked(token)
	}
	if len(c.state.AccessTokens) == 0 {
		// What the cf CLI's refresh does without a refresh token.
		return errors.New("You are not logged in. Use 'cf login' or 'cf login --sso' to log in.")
	}
	i := min(c.tokenNext, len(c.state.AccessTokens)-1)
	c.tokenNext++
	tokenType := c.state.TokenType
	if tokenType == "" {
		tokenType = "bearer"
	}
	*token = tokenType + " " + c.state.AccessTokens[i]
	return nil
}

// ApiEndpoint returns State.APIEndpoint.
func (s *Service) ApiEndpoint(_ string, endpoint *string) error {
	*endpoint = s.snapshot("ApiEndpoint", "").APIEndpoint
	return nil
}

// IsSSLDisabled returns State.SSLDisabled.
func (s *Service) IsSSLDisabled(_ string, disabled *bool) error {
	*disabled = s.snapshot("IsSSLDisabled", "").SSLDisabled
	return nil
}

// IsLoggedIn returns State.LoggedIn.
func (s *Service) IsLoggedIn(_ string, loggedIn *bool) error {
	*loggedIn = s.snapshot("IsLoggedIn", "").LoggedIn
	return nil
}

// HasSpace reports whether State.SpaceGUID is set, as the cf CLI does.
func (s *Service) HasSpace(_ string, hasSpace *bool) error {
	*hasSpace = s.snapshot("HasSpace", "").SpaceGUID != ""
	return nil
}

// HasOrganization reports whether State.OrgGUID is set.
func (s *Service) HasOrganization(_ string, hasOrg *bool) error {
	*hasOrg = s.snapshot("HasOrganization", "").OrgGUID != ""
	return nil
}

// GetCurrentSpace returns the space nested in SpaceFields.
func (s *Service) GetCurrentSpace(_ string, space *Space) error {
	state := s.snapshot("GetCurrentSpace", "")
	space.Guid = state.SpaceGUID
	space.Name = state.SpaceName
	return nil
}

// GetCurrentOrg returns the org nested in OrganizationFields, with an empty
// quota as the cf CLI sends it.
func (s *Service) GetCurrentOrg(_ string, org *Organization) error {
	state := s.snapshot("GetCurrentOrg", "")
	org.Guid = state.OrgGUID
	org.Name = state.OrgName
	return nil
}

// Username returns State.Username.
func (s *Service) Username(_ string, name *string) error {
	*name = s.snapshot("Username", "").Username
	return nil
}

// UserGuid returns State.UserGUID.
func (s *Service) UserGuid(_ string, guid *string) error {
	*guid = s.snapshot("UserGuid", "").UserGUID
	return nil
}

// errCCv2 is what the CC v2 getters answer: a plugin for CC v3 foundations
// must not use them, and the recorded call lets a test say so.
var errCCv2 = errors.New("fake cf CLI: GetApp and GetApps go through CC v2 and must not be used")

// GetApp is registered so a call is recorded and fails loudly.
func (s *Service) GetApp(appName string, _ *GetAppModel) error {
	s.snapshot("GetApp", appName)
	return errCCv2
}

// GetApps is registered so a call is recorded and fails loudly.
func (s *Service) GetApps(_ string, _ *[]GetAppsModel) error {
	s.snapshot("GetApps", "")
	return errCCv2
}
