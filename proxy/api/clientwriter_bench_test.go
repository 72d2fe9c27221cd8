package api

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"
)

// BenchmarkClientWriter is the cost of a deadline on every write and
// flush of a capture stream, set and cleared (deadline), against the same
// stream written without one (bare, the baseline, in the same run) and
// with a deadline set before each write and never cleared (setonly, what
// the API did before it cut quiet captures): 64 KiB written and flushed
// at a time, as a busy capture does, over HTTP/1.1 and HTTP/2 with TLS on
// loopback.
func BenchmarkClientWriter(b *testing.B) {
	const chunk = 64 << 10
	for _, proto := range []string{"HTTP1", "HTTP2"} {
		for _, mode := range []string{"bare", "setonly", "deadline"} {
			b.Run(proto+"/"+mode, func(b *testing.B) {
				srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					n, _ := strconv.Atoi(r.URL.Query().Get("n"))
					rc := http.NewResponseController(w)
					var out io.Writer = w
					flush := rc.Flush
					switch mode {
					case "deadline":
						cw := &clientWriter{w: w, rc: rc, timeout: time.Minute}
						out, flush = cw, cw.Flush
					case "setonly":
						out = writerFunc(func(p []byte) (int, error) {
							_ = rc.SetWriteDeadline(time.Now().Add(time.Minute))
							return w.Write(p)
						})
					}
					buf := make([]byte, chunk)
					for range n {
						if _, err := out.Write(buf); err != nil {
							return
						}
						if err := flush(); err != nil {
							return
						}
					}
				}))
				srv.EnableHTTP2 = proto == "HTTP2"
				srv.StartTLS()
				defer srv.Close()
				client := srv.Client()
				b.SetBytes(chunk)
				b.ResetTimer()
				resp, err := client.Get(srv.URL + "/?n=" + strconv.Itoa(b.N))
				if err != nil {
					b.Fatal(err)
				}
				got, err := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err != nil || got != int64(b.N)*chunk {
					b.Fatalf("read %d bytes: %v", got, err)
				}
			})
		}
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
