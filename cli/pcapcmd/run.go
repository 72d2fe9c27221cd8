// Package pcapcmd is the `pcap` command: it asks the pcap-server API for a
// capture of an app's instances and writes it to a file or stdout, showing
// progress and a summary. The cf CLI plugin and the standalone binary
// share it; they differ only in where the token and the app come from.
package pcapcmd

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cloudfoundry/pcap-server-release/cli/pcapstream"
	"github.com/cloudfoundry/pcap-server-release/cli/tokenkeeper"
)

// Session is what the command needs from a cf login.
type Session interface {
	// Token returns an access token without the "bearer " prefix. After
	// a 401 the command calls it once more, expecting a fresh one.
	Token(ctx context.Context) (string, error)
	// APIURL is the pcap-server API's URL derived from the cf target.
	APIURL(ctx context.Context) (string, error)
	// AppGUID finds the app by name in the targeted space.
	AppGUID(ctx context.Context, name string) (string, error)
}

// Env is the command's surroundings.
type Env struct {
	Stdout, Stderr io.Writer
	// StderrTerminal enables live progress.
	StderrTerminal bool
	// Session is nil when the options carry both a token and an app GUID.
	Session Session
	// Transport, if set, replaces the default HTTP transport (tests).
	Transport http.RoundTripper
	// TLSInsecure turns off TLS verification (the cf target's
	// --skip-ssl-validation).
	TLSInsecure bool
	// Stop is closed at the first Ctrl-C (or SIGTERM): the command asks
	// the API to stop the capture, and the stream ends with every packet
	// the cells captured and the trailers. Before the capture has started,
	// it gives up instead. Cancelling Run's ctx (a second Ctrl-C) aborts at
	// once, still leaving a valid file.
	Stop <-chan struct{}
	// CLIGone, for a cf CLI plugin, is closed when the cf CLI that started
	// it has exited; it stops the capture as Stop does. Nil when
	// standalone. Under the cf CLI, Ctrl-C at a terminal ends cf too, so a
	// second one reaches the shell, not the plugin.
	CLIGone <-chan struct{}
}

// Exit codes.
const (
	ExitOK    = 0
	ExitError = 1
	ExitUsage = 2
)

// Run runs the command and returns its exit code. Closing env.Stop ends the
// capture gracefully; cancelling ctx aborts it. Either way the file is
// valid.
func Run(ctx context.Context, o Options, env Env) int {
	p := &printer{w: env.Stderr}
	code, err := run(ctx, o, env, p)
	return report(p, env, "pcap", code, err)
}

// report prints a failure and passes on the exit code.
func report(p *printer, env Env, command string, code int, err error) int {
	if err != nil {
		p.clearProgress()
		fmt.Fprintf(env.Stderr, "%s: %v\n", command, err)
	}
	return code
}

func run(ctx context.Context, o Options, env Env, p *printer) (int, error) {
	sess := env.Session
	if o.Token != "" || sess == nil {
		sess = staticSession{token: o.Token, apiURL: o.APIURL, inner: sess}
	}
	if err := checkOutput(o.Output, o.Force); err != nil {
		return ExitError, err
	}
	apiURL := o.APIURL
	if apiURL == "" {
		u, err := sess.APIURL(ctx)
		if err != nil {
			return ExitError, err
		}
		apiURL = u
	}
	guid := o.AppGUID
	if guid == "" {
		g, err := sess.AppGUID(ctx, o.App)
		if err != nil {
			return ExitError, err
		}
		guid = g
	}
	reqURL, err := captureURL(apiURL, guid, o)
	if err != nil {
		return ExitError, err
	}
	return stream(ctx, Capture{
		URL:         reqURL,
		StopURL:     func(captureID string) string { return stopURL(reqURL, captureID, o.Process) },
		Subject:     "app " + o.App,
		Output:      o.Output,
		Force:       o.Force,
		Devices:     len(o.Devices),
		StopTimeout: o.StopTimeout,
	}, sess, env, p)
}

// Capture is one capture request as the command streams it: the `pcap`
// command's of an app, the `bosh` command's of VMs.
type Capture struct {
	// URL is the GET that streams the capture.
	URL string
	// StopURL is the DELETE that stops it, given its Pcap-Capture-Id.
	StopURL func(captureID string) string
	// Subject says what is captured, for the first line: "app my-app".
	Subject string
	// Output is the file (- for stdout); Force overwrites it.
	Output string
	Force  bool
	// Devices is how many devices each instance captures: with several,
	// the summary names the interfaces that dropped.
	Devices int
	// StopTimeout bounds a graceful stop; zero means DefaultStopTimeout.
	StopTimeout time.Duration
}

// Tokens gives the access token for each request, without "bearer ".
// After a 401 the command asks once more: Renew, when the source has it,
// or Token again.
type Tokens interface {
	Token(ctx context.Context) (string, error)
}

// Stream runs a capture request (the bosh command's; the pcap command's
// is Run) and returns the exit code: the same progress, summary, output
// and Ctrl-C handling for every kind of capture. command prefixes the
// error message.
func Stream(ctx context.Context, command string, c Capture, tokens Tokens, env Env) int {
	p := &printer{w: env.Stderr}
	code, err := 0, checkOutput(c.Output, c.Force)
	if err == nil {
		code, err = stream(ctx, c, tokens, env, p)
	} else {
		code = ExitError
	}
	return report(p, env, command, code, err)
}

// checkOutput refuses to start a capture whose file exists, unless
// forced: better now than after the capture has started.
func checkOutput(output string, force bool) error {
	if output == "-" || force {
		return nil
	}
	if _, err := os.Stat(output); err == nil {
		return fmt.Errorf("%s exists: use --force to overwrite it, or -o another file", output)
	}
	return nil
}

func stream(ctx context.Context, c Capture, tokens Tokens, env Env, p *printer) (int, error) {
	// Until the capture runs, a stop means giving up.
	ctx, abort := context.WithCancel(ctx)
	stopper := newStopper(abort, env.Stderr, p, c.StopTimeout, env.CLIGone != nil)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		stopper.watch(ctx, env.Stop, env.CLIGone)
	}()
	defer func() {
		abort()
		<-watched
	}()
	client := newClient(env)
	requested := time.Now()
	resp, token, err := get(ctx, client, c.URL, tokens)
	if err != nil {
		return ExitError, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return ExitError, problemError(resp)
	}
	// Keep a token fresh for the stop: the cf CLI may be gone by then.
	keeper := tokenkeeper.New(tokens.Token, token, nil)
	keepCtx, stopKeeping := context.WithCancel(ctx)
	kept := make(chan struct{})
	go func() {
		defer close(kept)
		keeper.Run(keepCtx)
	}()
	defer func() {
		stopKeeping()
		<-kept
	}()
	stopper.started(stopRequest{client: client, tokens: keeper, url: c.StopURL(resp.Header.Get("Pcap-Capture-Id"))})

	out, closeOut, err := openOutput(c.Output, c.Force, env.Stdout)
	if err != nil {
		return ExitError, err
	}
	start := time.Now()
	instances := resp.Header.Get("Pcap-Instances")
	fmt.Fprintf(env.Stderr, "Capturing %s, instance(s) %s, into %s (capture %s). Press Ctrl-C to stop.\n",
		c.Subject, instances, displayName(c.Output), resp.Header.Get("Pcap-Capture-Id"))
	if msg := resp.Header.Get("Pcap-Instance-Errors"); msg != "" {
		fmt.Fprintf(env.Stderr, "Not captured: %s\n", msg)
	}

	body := &bodyReader{r: resp.Body}
	copier := pcapstream.NewCopier(out, body)
	stopProgress := func() {}
	if env.StderrTerminal {
		stopProgress = p.startProgress(copier, start)
	}
	// A second Ctrl-C closes the stream: the copy ends on a whole record.
	stopCopy := context.AfterFunc(ctx, func() { resp.Body.Close() })
	copyErr := copier.Copy()
	stopper.finish()
	stopCopy()
	stopProgress()
	if err := closeOut(); err != nil && copyErr == nil {
		copyErr = err
	}
	p.clearProgress()
	why, cut, advice := streamCut(resp, body, requested)
	cut = cut && ctx.Err() == nil // a second Ctrl-C or the stop's bound cut it, not the way
	if cut {
		copyErr = cutError(why)
	}
	code, err := summarize(ctx, c, env, copier.Progress(), copier.InterfaceDrops(), resp.Trailer, copyErr, time.Since(start))
	if stopper.stopTimedOut() && code == ExitOK {
		// The file is valid, but the capture did not end as asked.
		code = ExitError
	}
	if cut && err == nil {
		err = advice
	}
	return code, err
}

// captureURL builds GET /v1/apps/{guid}/capture with the query.
func captureURL(apiURL, guid string, o Options) (string, error) {
	base, err := APIBase(apiURL)
	if err != nil {
		return "", err
	}
	q := Query(o.Filter, o.Devices, o.Snaplen, o.Format, o.Duration, o.Count)
	for _, i := range o.Instances {
		q.Add("instance", strconv.Itoa(i))
	}
	if o.Process != "web" {
		q.Set("process", o.Process)
	}
	if guid == "" || strings.ContainsAny(guid, "/?#%") {
		return "", fmt.Errorf("app GUID %q is not a GUID", guid)
	}
	base.Path += "/v1/apps/" + guid + "/capture"
	base.RawQuery = q.Encode()
	return base.String(), nil
}

// Query holds the options every capture takes, those that differ from
// the API's defaults.
func Query(filter string, devices []string, snaplen int, format string, duration time.Duration, count uint64) url.Values {
	q := url.Values{}
	if filter != "" {
		q.Set("filter", filter)
	}
	if !slices.Equal(devices, []string{"eth0"}) {
		q["device"] = devices
	}
	if snaplen != 65535 {
		q.Set("snaplen", strconv.Itoa(snaplen))
	}
	if format != "pcap" {
		q.Set("format", format)
	}
	if duration > 0 {
		q.Set("duration", duration.String())
	}
	if count > 0 {
		q.Set("packets", strconv.FormatUint(count, 10))
	}
	return q
}

// APIBase checks the API URL and returns it without a trailing slash.
func APIBase(apiURL string) (*url.URL, error) {
	base, err := url.Parse(strings.TrimRight(apiURL, "/"))
	if err != nil || (base.Scheme != "https" && base.Scheme != "http") || base.Host == "" {
		return nil, fmt.Errorf("API URL %q is not an http(s) URL", apiURL)
	}
	return base, nil
}

func newClient(env Env) *http.Client {
	tr := env.Transport
	if tr == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		// The API answers once every agent has: allow for container
		// lookups and Cloud Controller calls, not for the capture itself.
		t.ResponseHeaderTimeout = time.Minute
		t.DialContext = (&net.Dialer{Timeout: 15 * time.Second, KeepAlive: 15 * time.Second}).DialContext
		if env.TLSInsecure {
			t.TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
		}
		tr = t
	}
	return &http.Client{Transport: tr}
}

// renewer is a session that can replace a token a server rejected before
// its expiry (revoked, or signed with a retired key): the standalone CLI
// refreshes it at UAA, where asking for the token again would return the
// same one.
type renewer interface {
	Renew(ctx context.Context, rejected string) (string, error)
}

// get sends the request with a fresh token, and once more with a newer
// token after a 401: the token may have expired between the two, or been
// revoked. It returns the token that was sent.
func get(ctx context.Context, client *http.Client, reqURL string, sess Tokens) (*http.Response, string, error) {
	token, err := sess.Token(ctx)
	if err != nil {
		return nil, "", err
	}
	for attempt := 0; ; attempt++ {
		resp, err := send(ctx, client, reqURL, token)
		if err != nil || resp.StatusCode != http.StatusUnauthorized || attempt > 0 {
			return resp, token, err
		}
		resp.Body.Close()
		if r, ok := sess.(renewer); ok {
			token, err = r.Renew(ctx, token)
		} else {
			token, err = sess.Token(ctx)
		}
		if err != nil {
			return nil, "", err
		}
	}
}

// send sends the capture request once.
func send(ctx context.Context, client *http.Client, reqURL, token string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, reqURL, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "bearer "+token)
	req.Header.Set("Accept", "application/vnd.tcpdump.pcap, application/x-pcapng, application/problem+json")
	resp, err := client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, errors.New("interrupted before the capture started")
		}
		return nil, fmt.Errorf("cannot reach the pcap-server API at %s: %w", hostOf(reqURL), unwrapURLError(err))
	}
	return resp, nil
}

func hostOf(u string) string {
	if p, err := url.Parse(u); err == nil {
		return p.Scheme + "://" + p.Host
	}
	return u
}

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// problemError turns an error response into the API's message.
func problemError(resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var p struct {
		Title  string `json:"title"`
		Detail string `json:"detail"`
	}
	if err := json.Unmarshal(body, &p); err == nil && (p.Detail != "" || p.Title != "") {
		msg := p.Detail
		if msg == "" {
			msg = p.Title
		}
		if e := resp.Header.Get("Pcap-Instance-Errors"); e != "" && !strings.Contains(msg, e) {
			msg += " (" + e + ")"
		}
		return fmt.Errorf("%s (HTTP %d)", msg, resp.StatusCode)
	}
	snippet := strings.TrimSpace(string(body))
	if len(snippet) > 200 {
		snippet = snippet[:200] + "..."
	}
	return fmt.Errorf("the API answered %s: %s", resp.Status, snippet)
}

// openOutput opens the file only once the capture has started, so that a
// refused capture leaves nothing behind.
func openOutput(output string, force bool, stdout io.Writer) (io.Writer, func() error, error) {
	if output == "-" {
		if f, ok := stdout.(*os.File); ok {
			growPipe(f)
		}
		return stdout, func() error { return nil }, nil
	}
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if force {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(output, flags, 0o644)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, nil, fmt.Errorf("%s exists: use --force to overwrite it, or -o another file", output)
		}
		return nil, nil, fmt.Errorf("open output: %w", err)
	}
	return f, f.Close, nil
}

func displayName(output string) string {
	if output == "-" {
		return "stdout"
	}
	return output
}

// staticSession serves --token (and falls back to the cf login for the
// rest).
type staticSession struct {
	token, apiURL string
	inner         Session
}

func (s staticSession) Token(ctx context.Context) (string, error) {
	if s.token != "" {
		return s.token, nil
	}
	if s.inner == nil {
		return "", errors.New("no token: log in with cf login, or pass --token")
	}
	return s.inner.Token(ctx)
}

func (s staticSession) APIURL(ctx context.Context) (string, error) {
	if s.inner == nil {
		return "", errors.New("no API URL: pass --api-url or set PCAP_API_URL")
	}
	return s.inner.APIURL(ctx)
}

func (s staticSession) AppGUID(ctx context.Context, name string) (string, error) {
	if s.inner == nil {
		return "", fmt.Errorf("cannot look up app %s without a cf login: pass --app-guid", name)
	}
	return s.inner.AppGUID(ctx, name)
}
