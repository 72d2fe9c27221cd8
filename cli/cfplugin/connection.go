package cfplugin

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/rpc"
	"os"
	"strconv"
	"strings"
	"time"
)

// ServiceName is the net/rpc service the cf CLI registers.
const ServiceName = "CliRpcCmd"

// The cf CLI's shim pings this often and this far apart before giving up.
const (
	pingTries    = 5
	pingInterval = 200 * time.Millisecond
)

// Connection talks to the cf CLI that started the plugin. It holds no open
// socket: like the cf CLI's own client it dials once per call, so it is safe
// for concurrent use and survives as long as the cf CLI process does.
type Connection struct {
	addr string
	// parent is the pid of the cf CLI, this process's parent at start.
	parent int
}

// NewConnection returns a connection to the cf CLI's RPC server on
// 127.0.0.1:port.
func NewConnection(port int) *Connection {
	return &Connection{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), parent: os.Getppid()}
}

// Addr is the cf CLI's RPC address.
func (c *Connection) Addr() string { return c.addr }

// Ping connects and disconnects, up to 5 times 200 ms apart, as the cf CLI's
// shim does before any RPC: a plugin started by hand with a stale port fails
// here with a clear message instead of on its first real call.
func (c *Connection) Ping(ctx context.Context) error {
	var d net.Dialer
	var lastErr error
	for try := 1; try <= pingTries; try++ {
		conn, err := d.DialContext(ctx, "tcp", c.addr)
		if err == nil {
			return conn.Close()
		}
		lastErr = err
		if ctx.Err() != nil {
			break
		}
		if try == pingTries {
			break
		}
		t := time.NewTimer(pingInterval)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("ping cf CLI at %s: %w", c.addr, err)
	}
	return fmt.Errorf("ping cf CLI at %s: no answer after %d tries (is this plugin run by `cf`?): %w", c.addr, pingTries, lastErr)
}

// call performs one RPC on a fresh connection, as the cf CLI's client does,
// and names the method in its error.
func (c *Connection) call(ctx context.Context, method string, arg, reply any) error {
	if err := c.rawCall(ctx, method, arg, reply); err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	return nil
}

// rawCall bounds the dial and the call by ctx: on cancellation the
// connection is closed, which ends the pending call.
func (c *Connection) rawCall(ctx context.Context, method string, arg, reply any) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", c.addr)
	if err != nil {
		return fmt.Errorf("dial cf CLI at %s: %w", c.addr, err)
	}
	client := rpc.NewClient(conn)
	defer client.Close()

	pending := client.Go(ServiceName+"."+method, arg, reply, make(chan *rpc.Call, 1))
	select {
	case <-pending.Done:
		return pending.Error
	case <-ctx.Done():
		return ctx.Err()
	}
}

// IsLoggedIn reports whether the cf CLI holds an access token.
func (c *Connection) IsLoggedIn(ctx context.Context) (bool, error) {
	var loggedIn bool
	err := c.call(ctx, "IsLoggedIn", "", &loggedIn)
	return loggedIn, err
}

// ApiEndpoint is the Cloud Controller URL the cf CLI targets (config Target).
func (c *Connection) ApiEndpoint(ctx context.Context) (string, error) {
	var endpoint string
	err := c.call(ctx, "ApiEndpoint", "", &endpoint)
	return endpoint, err
}

// IsSSLDisabled reports whether the user targeted the API with
// --skip-ssl-validation.
func (c *Connection) IsSSLDisabled(ctx context.Context) (bool, error) {
	var disabled bool
	err := c.call(ctx, "IsSSLDisabled", "", &disabled)
	return disabled, err
}

// HasSpace reports whether a space is targeted.
func (c *Connection) HasSpace(ctx context.Context) (bool, error) {
	var hasSpace bool
	err := c.call(ctx, "HasSpace", "", &hasSpace)
	return hasSpace, err
}

// GetCurrentSpace returns the targeted space (zero fields if none).
func (c *Connection) GetCurrentSpace(ctx context.Context) (Space, error) {
	var space Space
	err := c.call(ctx, "GetCurrentSpace", "", &space)
	return space, err
}

// GetCurrentOrg returns the targeted org (zero fields if none).
func (c *Connection) GetCurrentOrg(ctx context.Context) (Organization, error) {
	var org Organization
	err := c.call(ctx, "GetCurrentOrg", "", &org)
	return org, err
}

// Username is the logged-in user's name (or client id).
func (c *Connection) Username(ctx context.Context) (string, error) {
	var name string
	err := c.call(ctx, "Username", "", &name)
	return name, err
}

// UserGuid is the logged-in user's GUID.
func (c *Connection) UserGuid(ctx context.Context) (string, error) {
	var guid string
	err := c.call(ctx, "UserGuid", "", &guid)
	return guid, err
}

// ErrNoAccessToken means the cf CLI answered the AccessToken call with an
// error, typically because the refresh token expired.
var ErrNoAccessToken = errors.New("the cf CLI could not provide an access token (run `cf login`)")

// AccessToken returns a current UAA access token without its "bearer "
// prefix. The cf CLI refreshes the token when it is about to expire, so call
// this right before each request and again after a 401.
func (c *Connection) AccessToken(ctx context.Context) (string, error) {
	var token string
	if err := c.rawCall(ctx, "AccessToken", "", &token); err != nil {
		var serverErr rpc.ServerError
		if errors.As(err, &serverErr) {
			return "", fmt.Errorf("AccessToken: %w: %w", ErrNoAccessToken, err)
		}
		return "", fmt.Errorf("AccessToken: %w", err)
	}
	token = StripBearer(token)
	if token == "" {
		return "", fmt.Errorf("AccessToken: %w: empty token", ErrNoAccessToken)
	}
	return token, nil
}

// StripBearer removes the "bearer" scheme (any case) and surrounding
// spaces; a bare "bearer" leaves nothing.
func StripBearer(token string) string {
	token = strings.TrimSpace(token)
	const scheme = "bearer"
	if len(token) >= len(scheme) && strings.EqualFold(token[:len(scheme)], scheme) {
		rest := token[len(scheme):]
		if rest == "" || rest[0] == ' ' || rest[0] == '\t' {
			return strings.TrimSpace(rest)
		}
	}
	return token
}

// IsMinCliVersion asks whether the running cf CLI is at least version
// ("M.m.b").
func (c *Connection) IsMinCliVersion(ctx context.Context, version string) (bool, error) {
	var ok bool
	err := c.call(ctx, "IsMinCliVersion", version, &ok)
	return ok, err
}

// SetPluginMetadata hands the plugin's metadata to the cf CLI.
func (c *Connection) SetPluginMetadata(ctx context.Context, meta PluginMetadata) error {
	var accepted bool
	if err := c.call(ctx, "SetPluginMetadata", meta, &accepted); err != nil {
		return err
	}
	if !accepted {
		return errors.New("SetPluginMetadata: the cf CLI did not accept the metadata")
	}
	return nil
}
