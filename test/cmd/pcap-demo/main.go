// Command pcap-demo is the helper of `make demo`: it writes a throwaway CA
// and certificates, serves a tiny HTTP app inside the demo network
// namespace, and sends it requests. It is not part of the release.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/cloudfoundry/pcap-server-release/test/testpki"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "pcap-demo:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) < 2 {
		return errors.New("usage: pcap-demo certs DIR | serve ADDR | get URL COUNT | wait-agent API_URL TOKEN")
	}
	switch args[0] {
	case "certs":
		return certs(args[1])
	case "serve":
		return serve(args[1])
	case "get":
		n := 1
		if len(args) > 2 {
			var err error
			if n, err = strconv.Atoi(args[2]); err != nil {
				return fmt.Errorf("count %q: %w", args[2], err)
			}
		}
		return get(args[1], n)
	case "wait-agent":
		if len(args) < 3 {
			return errors.New("usage: pcap-demo wait-agent API_URL TOKEN")
		}
		return waitAgent(args[1], args[2])
	}
	return fmt.Errorf("unknown command %q", args[0])
}

// certs writes ca.crt, api.crt/key (for the tunnel's server name) and
// agent.crt/key, as BOSH would generate them.
func certs(dir string) error {
	ca, err := testpki.NewCA("pcap demo CA")
	if err != nil {
		return err
	}
	if _, err := ca.WriteFile(dir, "ca"); err != nil {
		return err
	}
	api, err := ca.Server("pcap-server-api.service.cf.internal", "127.0.0.1")
	if err != nil {
		return err
	}
	if _, _, err := api.WriteFiles(dir, "api"); err != nil {
		return err
	}
	agent, err := ca.Client("pcap-server agent")
	if err != nil {
		return err
	}
	_, _, err = agent.WriteFiles(dir, "agent")
	return err
}

// serve is the demo app: it answers every request with a short greeting.
func serve(addr string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv := &http.Server{
		Addr:              addr,
		ReadHeaderTimeout: 5 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "hello from the demo app, you asked for %s\n", r.URL.Path)
		}),
	}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// get sends n requests and prints the first answer.
func get(url string, n int) error {
	client := &http.Client{Timeout: 5 * time.Second}
	for i := range n {
		resp, err := client.Get(fmt.Sprintf("%s/request-%d", url, i))
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if i == 0 {
			fmt.Printf("demo app answered: %s", body)
		}
	}
	return nil
}

// waitAgent polls GET /v1/agents until an agent is connected, for at
// most 30 seconds.
func waitAgent(apiURL, token string) error {
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		req, err := http.NewRequest(http.MethodGet, apiURL+"/v1/agents", nil)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "bearer "+token)
		resp, err := client.Do(req)
		if err == nil {
			var body struct {
				Agents []struct {
					ID string `json:"id"`
				} `json:"agents"`
			}
			err = json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			if err == nil && len(body.Agents) > 0 {
				fmt.Printf("agent %s is connected to the API\n", body.Agents[0].ID)
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no agent connected to %s within 30s (last error: %v)", apiURL, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
