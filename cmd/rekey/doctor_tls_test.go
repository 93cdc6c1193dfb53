package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// testCert makes a self-signed certificate for 127.0.0.1 valid until notAfter.
func testCert(t *testing.T, notAfter time.Time) (certPEM, keyPEM []byte) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "atlas test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter,
		DNSNames: []string{"localhost"}, IPAddresses: nil,
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd})
}

func (p *docProject) addTLS(entries string) {
	data, err := os.ReadFile(filepath.Join(p.dir, "rekey.yaml"))
	if err != nil {
		p.t.Fatal(err)
	}
	p.write("rekey.yaml", string(data)+"tls:\n"+entries, 0o644)
	if _, errs, code := p.rekey("config", "trust"); code != 0 { // the operator approves the edit
		p.t.Fatalf("config trust: exit %d\n%s", code, errs)
	}
}

func TestDoctorTLS(t *testing.T) {
	t.Run("none listed", func(t *testing.T) {
		p := newDocProject(t, false)
		wantCheck(t, p.doctor(0), "tls-expiry", checkPass, "no certificates listed")
	})
	t.Run("file valid for 100 days", func(t *testing.T) {
		p := newDocProject(t, false)
		c, k := testCert(t, time.Now().Add(100*24*time.Hour))
		p.write("certs/api.pem", string(c)+string(k), 0o600) // the key beside it is never read
		p.addTLS("  api: {file: certs/api.pem}\n")
		wantCheck(t, p.doctor(0), "tls-expiry", checkPass, "api until")
	})
	t.Run("file expiring in 10 days", func(t *testing.T) {
		p := newDocProject(t, false)
		c, _ := testCert(t, time.Now().Add(10*24*time.Hour))
		p.write("certs/api.pem", string(c), 0o644)
		p.addTLS("  api: {file: certs/api.pem}\n")
		wantCheck(t, p.doctor(1), "tls-expiry", checkFail, "api (certs/api.pem) expires on", "in 9 days")
	})
	t.Run("file expired", func(t *testing.T) {
		p := newDocProject(t, false)
		c, _ := testCert(t, time.Now().Add(-24*time.Hour))
		p.write("old.pem", string(c), 0o644)
		p.addTLS("  old: {file: old.pem}\n")
		wantCheck(t, p.doctor(1), "tls-expiry", checkFail, "old (old.pem) expired on")
	})
	t.Run("file without a certificate", func(t *testing.T) {
		p := newDocProject(t, false)
		p.write("junk.pem", "not pem\n", 0o644)
		p.addTLS("  junk: {file: junk.pem}\n")
		wantCheck(t, p.doctor(1), "tls-expiry", checkFail, "no PEM certificate")
	})
	for _, tc := range []struct {
		name   string
		days   int
		status string
	}{{"endpoint valid", 200, checkPass}, {"endpoint expiring in 5 days", 5, checkFail}} {
		t.Run(tc.name, func(t *testing.T) {
			c, k := testCert(t, time.Now().Add(time.Duration(tc.days)*24*time.Hour))
			pair, err := tls.X509KeyPair(c, k)
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewUnstartedServer(http.NotFoundHandler())
			srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
			srv.StartTLS()
			defer srv.Close()
			p := newDocProject(t, false)
			p.addTLS("  edge: {endpoint: '" + srv.Listener.Addr().String() + "'}\n")
			want := 0
			if tc.status == checkFail {
				want = 1
			}
			wantCheck(t, p.doctor(want), "tls-expiry", tc.status, "edge")
		})
	}
}
