package fakeserver

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/cloudfoundry/pcap-server-release/test/testpki"
)

// CA is a throw-away certificate authority. Each fake server gets its own,
// so a test notices when a client trusts the Cloud Controller's CA but talks
// to UAA (the two are configured separately in pcap-server-api).
type CA struct {
	ca *testpki.CA
}

// NewCA creates a CA valid for a day.
func NewCA(commonName string) (*CA, error) {
	ca, err := testpki.NewCA(commonName)
	if err != nil {
		return nil, err
	}
	return &CA{ca: ca}, nil
}

// Issue signs a leaf certificate usable by servers and clients. Each host
// becomes an IP SAN when it parses as an IP, a DNS SAN otherwise.
func (ca *CA) Issue(commonName string, hosts ...string) (tls.Certificate, error) {
	leaf, err := ca.ca.Issue(commonName, hosts, x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth)
	if err != nil {
		return tls.Certificate{}, err
	}
	return leaf.TLS()
}

// CertPEM is the CA certificate in PEM, for configs that take a CA file.
func (ca *CA) CertPEM() []byte { return append([]byte(nil), ca.ca.CertPEM...) }

// CertPool is a pool holding only this CA.
func (ca *CA) CertPool() *x509.CertPool { return ca.ca.Pool() }

// Client is an HTTP client that trusts only this CA. It has its own
// transport so that closing one test's idle connections does not affect
// another's.
func (ca *CA) Client() *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			TLSClientConfig:     &tls.Config{RootCAs: ca.CertPool(), MinVersion: tls.VersionTLS12},
			ForceAttemptHTTP2:   true,
			MaxIdleConnsPerHost: 4,
			IdleConnTimeout:     30 * time.Second,
		},
		Timeout: 30 * time.Second,
	}
}

// ServerTLS is the server side of a fake: a certificate for loopback, and
// for the names given (a client that resolves them through a hosts file of
// its own), signed by ca.
func (ca *CA) ServerTLS(name string, names ...string) (*tls.Config, error) {
	cert, err := ca.Issue(name, append([]string{"127.0.0.1", "::1", "localhost"}, names...)...)
	if err != nil {
		return nil, err
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// StartTLS serves h over TLS with cfg on l, or on a new loopback port when
// l is nil (a fake's ServeOn option passes a listener opened in another
// network namespace).
func StartTLS(h http.Handler, cfg *tls.Config, l net.Listener) *httptest.Server {
	srv := httptest.NewUnstartedServer(h)
	if l != nil {
		_ = srv.Listener.Close()
		srv.Listener = l
	}
	srv.TLS = cfg
	srv.StartTLS()
	return srv
}
