package api

import (
	"fmt"
	"html"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cloudfoundry/pcap-server-release/proxy/problem"
)

// cliHandler serves the CLI binaries in dir under /cli/, with an index
// page listing them and how to install the plugin.
func cliHandler(dir string) http.Handler {
	files := http.StripPrefix("/cli/", http.FileServer(http.Dir(dir)))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if dir == "" {
			problem.Write(w, problem.New(http.StatusNotFound, "this API serves no CLI downloads"))
			return
		}
		name := strings.TrimPrefix(r.URL.Path, "/cli/")
		if name == "" || name == "index.html" {
			writeCLIIndex(w, r, dir)
			return
		}
		if strings.Contains(name, "/") || !strings.HasPrefix(name, "pcap-server-cli-") {
			problem.Write(w, problem.New(http.StatusNotFound, "no such download: %s", name))
			return
		}
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			problem.Write(w, problem.New(http.StatusNotFound, "no such download: %s", name))
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", name))
		files.ServeHTTP(w, r)
	})
}

func writeCLIIndex(w http.ResponseWriter, r *http.Request, dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		problem.Write(w, problem.Wrap(err, http.StatusInternalServerError, "cannot list the CLI downloads"))
		return
	}
	var names []string
	for _, e := range entries {
		if !e.IsDir() && strings.HasPrefix(e.Name(), "pcap-server-cli-") {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	var b strings.Builder
	b.WriteString("<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>pcap-server CLI</title></head><body>\n")
	b.WriteString("<h1>cf pcap: the pcap-server CLI plugin</h1>\n<p>Download the binary for your system, then install it as a cf CLI plugin:</p>\n")
	fmt.Fprintf(&b, "<pre>wget https://%s/cli/pcap-server-cli-linux-amd64 -O pcap-cli &amp;&amp; cf install-plugin pcap-cli</pre>\n<ul>\n", html.EscapeString(r.Host))
	for _, n := range names {
		fmt.Fprintf(&b, "<li><a href=\"%s\">%s</a></li>\n", html.EscapeString(n), html.EscapeString(n))
	}
	b.WriteString("</ul>\n</body></html>\n")
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write([]byte(b.String()))
}
