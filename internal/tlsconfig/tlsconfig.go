// Package tlsconfig builds the TLS configurations of the tunnel and the
// HTTP listener from PEM files, with the same floor everywhere: TLS 1.2 at
// least, TLS 1.3 preferred (Go negotiates the highest both sides speak).
package tlsconfig

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
)

// CAPool reads a PEM bundle of CA certificates.
func CAPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read CA bundle: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA bundle %s holds no PEM certificate", path)
	}
	return pool, nil
}

// KeyPair loads a certificate and its key.
func KeyPair(certFile, keyFile string) (tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("load certificate %s and key %s: %w", certFile, keyFile, err)
	}
	return cert, nil
}

// Server is a plain TLS server configuration (no client certificates).
func Server(certFile, keyFile string) (*tls.Config, error) {
	cert, err := KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}, nil
}

// MutualServer requires and verifies a client certificate issued by the CA
// in clientCAFile: a peer without one never gets past the handshake.
func MutualServer(certFile, keyFile, clientCAFile string) (*tls.Config, error) {
	cfg, err := Server(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	if cfg.ClientCAs, err = CAPool(clientCAFile); err != nil {
		return nil, err
	}
	cfg.ClientAuth = tls.RequireAndVerifyClientCert
	return cfg, nil
}

// MutualClient presents a client certificate and verifies the server
// against the CA in caFile and serverName (the tunnel dials IP addresses,
// so the name to verify is configured rather than taken from the address).
func MutualClient(certFile, keyFile, caFile, serverName string) (*tls.Config, error) {
	cert, err := KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	pool, err := CAPool(caFile)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		ServerName:   serverName,
	}, nil
}

// Client verifies servers against the CAs in caFile, or the system roots
// when caFile is empty: for the API's calls to the Cloud Controller, UAA
// and the BOSH director.
func Client(caFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile == "" {
		pool, err := x509.SystemCertPool()
		if err == nil {
			cfg.RootCAs = pool
		}
		return cfg, nil
	}
	pool, err := CAPool(caFile)
	if err != nil {
		return nil, err
	}
	cfg.RootCAs = pool
	return cfg, nil
}
