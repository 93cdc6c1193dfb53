package doctor

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"strings"
	"time"
)

// tlsWarnWithin is how close to expiry a certificate fails the tls check.
const tlsWarnWithin = 30 * 24 * time.Hour

// checkTLS reads every certificate listed under tls: in rekey.yaml (PEM files,
// and what host:port endpoints serve) and fails when one expires within 30
// days. Only certificates are read: a private key in the same file is skipped.
func (d *run) checkTLS() Check {
	const name = "tls-expiry"
	if len(d.cfg.TLS) == 0 {
		return pass(name, "no certificates listed (add them under tls: in rekey.yaml)")
	}
	now := d.Now()
	var bad, unreadable, ok []string
	for _, c := range d.cfg.TLS {
		var certs []*x509.Certificate
		var err error
		where := c.Endpoint
		if c.File != "" {
			where = d.rel(c.File)
			certs, err = certsFromFile(c.File)
		} else {
			certs, err = certsFromEndpoint(c.Endpoint)
		}
		if err != nil {
			unreadable = append(unreadable, fmt.Sprintf("%s (%s): %v", c.Name, where, err))
			continue
		}
		leaf := certs[0]
		left := leaf.NotAfter.Sub(now)
		switch {
		case left <= 0:
			bad = append(bad, fmt.Sprintf("%s (%s) expired on %s", c.Name, where, leaf.NotAfter.UTC().Format("2006-01-02")))
		case left < tlsWarnWithin:
			bad = append(bad, fmt.Sprintf("%s (%s) expires on %s, in %d days", c.Name, where, leaf.NotAfter.UTC().Format("2006-01-02"), int(left.Hours()/24)))
		default:
			ok = append(ok, fmt.Sprintf("%s until %s", c.Name, leaf.NotAfter.UTC().Format("2006-01-02")))
		}
	}
	switch {
	case len(bad) > 0:
		return fail(name, strings.Join(append(bad, unreadable...), "; "), "renew the certificate(s) before they expire, then deploy them")
	case len(unreadable) > 0:
		return fail(name, strings.Join(unreadable, "; "), "fix the file or endpoint under tls: in rekey.yaml")
	}
	return pass(name, "valid for 30 days or more: "+strings.Join(ok, ", "))
}

func certsFromFile(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read it")
	}
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue // never parse or print a private key
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("a certificate does not parse")
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no PEM certificate in it")
	}
	return out, nil
}

// certsFromEndpoint reads the chain an endpoint serves. Verification is off on
// purpose: an expired or self-signed certificate must still be reported.
func certsFromEndpoint(hostport string) ([]*x509.Certificate, error) {
	host, _, _ := net.SplitHostPort(hostport)
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", hostport, &tls.Config{ServerName: host, InsecureSkipVerify: true})
	if err != nil {
		return nil, fmt.Errorf("cannot connect: %v", err)
	}
	defer conn.Close()
	certs := conn.ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return nil, fmt.Errorf("no certificate served")
	}
	return certs, nil
}
