// Command testplugin is a tiny cf CLI plugin built by the tests of cfplugin
// and fakecf. `cf pcap SUBCOMMAND` selects what it does:
//
//	info          print what the cf CLI reports, one key=value a line
//	token N       fetch the access token N times, one a line
//	args ...      print the arguments it got, one a line
//	fail          exit 3 with a message on stderr
//
// Run without a port it prints "standalone" and its arguments.
// TESTPLUGIN_MIN_CLI (M.m.b) sets MinCliVersion; TESTPLUGIN_NAME replaces
// the plugin name "pcap-test".
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"

	"github.com/cloudfoundry/pcap-server-release/cli/cfplugin"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := plugin().Main(ctx, os.Args)
	stop()
	os.Exit(code)
}

func plugin() cfplugin.Plugin {
	return cfplugin.Plugin{
		Metadata:   metadata(),
		Run:        run,
		Standalone: standalone,
		Stderr:     os.Stderr,
	}
}

func metadata() cfplugin.PluginMetadata {
	meta := cfplugin.PluginMetadata{
		Name:           "pcap-test",
		Version:        cfplugin.VersionType{Major: 1, Minor: 2, Build: 3},
		LibraryVersion: cfplugin.VersionType{Major: 1},
		Commands: []cfplugin.Command{{
			Name:     "pcap",
			Alias:    "tcpdump",
			HelpText: "Capture packets of an app",
			UsageDetails: cfplugin.Usage{
				Usage: "cf pcap APP [-o FILE] [-i 0,1]",
				Options: map[string]string{
					"o":        "output file",
					"instance": "instance indexes",
				},
			},
		}},
	}
	if name := os.Getenv("TESTPLUGIN_NAME"); name != "" {
		meta.Name = name
	}
	if v := os.Getenv("TESTPLUGIN_MIN_CLI"); v != "" {
		parts := strings.Split(v, ".")
		nums := make([]int, 3)
		for i := 0; i < 3 && i < len(parts); i++ {
			nums[i], _ = strconv.Atoi(parts[i])
		}
		meta.MinCliVersion = cfplugin.VersionType{Major: nums[0], Minor: nums[1], Build: nums[2]}
	}
	return meta
}

func run(ctx context.Context, conn *cfplugin.Connection, args []string) error {
	if len(args) < 2 || args[0] != "pcap" {
		return fmt.Errorf("usage: cf pcap info|token N|args ...|fail (got %q)", args)
	}
	switch args[1] {
	case "info":
		return info(ctx, conn)
	case "token":
		n := 1
		if len(args) > 2 {
			n, _ = strconv.Atoi(args[2])
		}
		for range n {
			token, err := conn.AccessToken(ctx)
			if err != nil {
				return err
			}
			fmt.Println(token)
		}
		return nil
	case "args":
		for _, a := range args {
			fmt.Println(a)
		}
		return nil
	case "fail":
		return &cfplugin.ExitError{Code: 3, Err: errors.New("fail requested")}
	}
	return fmt.Errorf("unknown subcommand %q", args[1])
}

func info(ctx context.Context, conn *cfplugin.Connection) error {
	loggedIn, err := conn.IsLoggedIn(ctx)
	if err != nil {
		return err
	}
	api, err := conn.ApiEndpoint(ctx)
	if err != nil {
		return err
	}
	sslDisabled, err := conn.IsSSLDisabled(ctx)
	if err != nil {
		return err
	}
	hasSpace, err := conn.HasSpace(ctx)
	if err != nil {
		return err
	}
	space, err := conn.GetCurrentSpace(ctx)
	if err != nil {
		return err
	}
	org, err := conn.GetCurrentOrg(ctx)
	if err != nil {
		return err
	}
	user, err := conn.Username(ctx)
	if err != nil {
		return err
	}
	userGUID, err := conn.UserGuid(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("logged_in=%t\napi=%s\nssl_disabled=%t\nhas_space=%t\n", loggedIn, api, sslDisabled, hasSpace)
	fmt.Printf("space_guid=%s\nspace_name=%s\norg_guid=%s\norg_name=%s\n", space.Guid, space.Name, org.Guid, org.Name)
	fmt.Printf("username=%s\nuser_guid=%s\n", user, userGUID)
	return nil
}

func standalone(_ context.Context, args []string) error {
	fmt.Println("standalone")
	for _, a := range args {
		fmt.Println(a)
	}
	return nil
}
