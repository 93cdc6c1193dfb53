package notify

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/rekeyhq/rekey"
)

// mailbox is a real SMTP server (go-smtp) with STARTTLS and AUTH PLAIN.
type mailbox struct {
	user, pass string
	mu         sync.Mutex
	auths      []string // "user:ok" or "user:refused"; never the password
	mails      []received
}

type received struct {
	from string
	to   []string
	data string
	tls  bool
}

func (b *mailbox) NewSession(c *smtp.Conn) (smtp.Session, error) {
	return &mailSession{box: b, conn: c}, nil
}

type mailSession struct {
	box    *mailbox
	conn   *smtp.Conn
	authed bool
	cur    received
}

func (s *mailSession) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *mailSession) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, username, password string) error {
		ok := username == s.box.user && password == s.box.pass
		s.box.mu.Lock()
		defer s.box.mu.Unlock()
		if !ok {
			s.box.auths = append(s.box.auths, username+":refused")
			return errors.New("invalid credentials")
		}
		s.box.auths = append(s.box.auths, username+":ok")
		s.authed = true
		return nil
	}), nil
}

func (s *mailSession) Mail(from string, _ *smtp.MailOptions) error {
	if !s.authed {
		return smtp.ErrAuthRequired
	}
	_, isTLS := s.conn.TLSConnectionState()
	s.cur = received{from: from, tls: isTLS}
	return nil
}

func (s *mailSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.cur.to = append(s.cur.to, to)
	return nil
}

func (s *mailSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.cur.data = string(b)
	s.box.mu.Lock()
	s.box.mails = append(s.box.mails, s.cur)
	s.box.mu.Unlock()
	return nil
}

func (s *mailSession) Reset()        { s.cur = received{} }
func (s *mailSession) Logout() error { return nil }

// startMailbox serves b on 127.0.0.1 with a self-signed certificate for
// 127.0.0.1 (STARTTLS when withTLS) and returns its address and the PEM
// file of the certificate, to trust as ca_file.
func startMailbox(t *testing.T, b *mailbox, withTLS bool) (addr, caFile string) {
	t.Helper()
	cert, certPEM := selfSigned(t)
	caFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	s := smtp.NewServer(b)
	s.Domain = "localhost"
	s.ErrorLog = log.New(io.Discard, "", 0)
	s.ReadTimeout, s.WriteTimeout = 10*time.Second, 10*time.Second
	if withTLS {
		s.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(l) }()
	t.Cleanup(func() { _ = s.Close() })
	return l.Addr().String(), caFile
}

func selfSigned(t *testing.T) (tls.Certificate, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "rekey test SMTP"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyDER, _ := x509.MarshalECPrivateKey(key)
	cert, err := tls.X509KeyPair(certPEM, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
	if err != nil {
		t.Fatal(err)
	}
	return cert, certPEM
}

const smtpPassword = "smtp-pass-7Hq2Lw9Xz4Rk1Vb8Nc3M"

func TestEmailSTARTTLSAuth(t *testing.T) {
	box := &mailbox{user: "rekey", pass: smtpPassword}
	addr, ca := startMailbox(t, box, true)
	em, err := NewEmail(Base{ChannelName: "mail"}, EmailOptions{
		Addr: addr, CAFile: ca, Username: "rekey", Password: rekey.NewValueString(smtpPassword),
		From: "rekey@example.com", To: []string{"security@example.com", "dba@example.com"},
	})
	if err != nil {
		t.Fatal(err)
	}
	m := testMessage()
	status, err := em.Deliver(context.Background(), m)
	if err != nil || status != "250 accepted" {
		t.Fatalf("Deliver = %q, %v", status, err)
	}
	if len(box.auths) != 1 || box.auths[0] != "rekey:ok" {
		t.Errorf("auths = %v", box.auths)
	}
	if len(box.mails) != 1 {
		t.Fatalf("received %d mails", len(box.mails))
	}
	got := box.mails[0]
	if !got.tls || got.from != "rekey@example.com" || strings.Join(got.to, ",") != "security@example.com,dba@example.com" {
		t.Errorf("mail = %+v", got)
	}
	for _, want := range []string{"Subject: [rekey critical] Incident INC-20261208-0a1b2c opened", "X-Rekey-Idempotency-Key: " + m.IdempotencyKey, "Content-Type: text/plain; charset=utf-8",
		"JWT_SECRET v4 fp:1a2b3c4d", "Next: rekey incident status INC-20261208-0a1b2c"} {
		if !strings.Contains(got.data, want) {
			t.Errorf("mail lacks %q:\n%s", want, got.data)
		}
	}
	noCanary(t, "mail", got.data)
	if strings.Contains(got.data, smtpPassword) {
		t.Error("the SMTP password is in the mail")
	}

	// A wrong password is refused, and the error does not show it.
	em2, _ := NewEmail(Base{ChannelName: "mail"}, EmailOptions{Addr: addr, CAFile: ca, Username: "rekey", Password: rekey.NewValueString("wrong-password-123456"),
		From: "rekey@example.com", To: []string{"security@example.com"}})
	_, err = em2.Deliver(context.Background(), m)
	if err == nil || !strings.Contains(err.Error(), "authentication failed") || strings.Contains(err.Error(), "wrong-password") {
		t.Errorf("wrong password: err = %v", err)
	}
}

// TestEmailRefusesWithoutTLS: a server that offers no STARTTLS never sees
// the password; a certificate the CA file does not vouch for is refused.
func TestEmailRefusesWithoutTLS(t *testing.T) {
	box := &mailbox{user: "rekey", pass: smtpPassword}
	addr, ca := startMailbox(t, box, false)
	opts := EmailOptions{Addr: addr, CAFile: ca, Username: "rekey", Password: rekey.NewValueString(smtpPassword),
		From: "rekey@example.com", To: []string{"security@example.com"}}
	em, _ := NewEmail(Base{ChannelName: "mail"}, opts)
	_, err := em.Deliver(context.Background(), testMessage())
	if err == nil || !strings.Contains(err.Error(), "does not offer STARTTLS") || rekey.ErrorHint(err) == "" {
		t.Errorf("err = %v", err)
	}
	if len(box.auths) != 0 || len(box.mails) != 0 {
		t.Errorf("the server got auths %v, mails %d", box.auths, len(box.mails))
	}
	opts.TLS = TLSNone
	if _, err := NewEmail(Base{ChannelName: "mail"}, opts); err == nil || !strings.Contains(err.Error(), "refusing to send a password without TLS") {
		t.Errorf("tls none with a password: err = %v", err)
	}

	box2 := &mailbox{user: "rekey", pass: smtpPassword}
	addr2, _ := startMailbox(t, box2, true)
	opts.TLS, opts.Addr = TLSStartTLS, addr2 // ca: another server's certificate
	em3, _ := NewEmail(Base{ChannelName: "mail"}, opts)
	_, err = em3.Deliver(context.Background(), testMessage())
	if err == nil || !strings.Contains(err.Error(), "STARTTLS failed") {
		t.Errorf("untrusted certificate: err = %v", err)
	}
	if len(box2.auths) != 0 {
		t.Errorf("the untrusted server got auths %v", box2.auths)
	}
}
