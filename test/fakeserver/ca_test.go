package fakeserver_test

import (
	"crypto/x509"
	"errors"
	"testing"

	"github.com/cloudfoundry/pcap-server-release/test/fakecc"
	"github.com/cloudfoundry/pcap-server-release/test/fakeserver"
	"github.com/cloudfoundry/pcap-server-release/test/fakeuaa"
)

func TestEachFakeHasItsOwnCA(t *testing.T) {
	u := fakeuaa.New(t)
	cc := fakecc.New(t, u)

	if _, err := u.Client().Get(u.TokenKeysURL()); err != nil {
		t.Errorf("UAA client to UAA: %v", err)
	}
	_, err := u.Client().Get(cc.URL + "/")
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Errorf("UAA client to Cloud Controller: err = %v, want unknown authority", err)
	}
}

func TestIssueClientAndServerCertificate(t *testing.T) {
	ca, err := fakeserver.NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Issue("agent", "10.0.0.1", "pcap.example.com")
	if err != nil {
		t.Fatal(err)
	}
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := cert.Leaf.Verify(x509.VerifyOptions{Roots: ca.CertPool(), DNSName: "pcap.example.com", KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
			t.Errorf("verify for %v: %v", usage, err)
		}
	}
	if len(cert.Leaf.IPAddresses) != 1 || cert.Leaf.IPAddresses[0].String() != "10.0.0.1" {
		t.Errorf("IP SANs = %v", cert.Leaf.IPAddresses)
	}
	if len(ca.CertPEM()) == 0 {
		t.Error("empty CA PEM")
	}
}
