package notify

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/smtp"
	"os"
	"strings"
	"time"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/textsafe"
)

// The TLS modes of an email channel.
const (
	TLSStartTLS = "starttls" // the default: STARTTLS is required
	TLSImplicit = "implicit" // TLS from the first byte (port 465)
	TLSNone     = "none"     // no TLS: only without credentials
)

// EmailOptions configure the email channel.
type EmailOptions struct {
	Addr     string // host:port of the SMTP server
	TLS      string // TLSStartTLS (default), TLSImplicit or TLSNone
	CAFile   string // PEM file of the CAs to trust instead of the system's ("": the system's)
	Username string
	Password rekey.Value // AUTH PLAIN; zero: no AUTH
	From     string
	To       []string
}

// Email sends a plain text message over SMTP (net/smtp). Credentials are
// never sent without TLS: with STARTTLS (the default) a server that does
// not offer it is refused, and TLSNone refuses a password.
type Email struct {
	Base
	o    EmailOptions
	host string
}

// NewEmail is the email channel.
func NewEmail(b Base, o EmailOptions) (*Email, error) {
	bad := func(hint, format string, args ...any) error {
		return rekey.Errorf(rekey.CodeInvalid, "email %s: %s", textsafe.Quote(b.ChannelName), fmt.Sprintf(format, args...)).WithHint("%s", hint)
	}
	host, _, err := net.SplitHostPort(o.Addr)
	if err != nil || host == "" {
		return nil, bad("write smtp: host:port, e.g. smtp.example.com:587", "smtp is not host:port")
	}
	switch o.TLS {
	case "":
		o.TLS = TLSStartTLS
	case TLSStartTLS, TLSImplicit:
	case TLSNone:
		if !o.Password.IsZero() {
			return nil, bad("use tls: starttls or implicit, or remove password_secret", "refusing to send a password without TLS")
		}
	default:
		return nil, bad("tls is starttls, implicit or none", "unknown tls mode %s", textsafe.Quote(o.TLS))
	}
	if _, err := mail.ParseAddress(o.From); err != nil {
		return nil, bad("write from: rekey@example.com", "from is not an email address")
	}
	if len(o.To) == 0 {
		return nil, bad("list the recipients, e.g. to: [security@example.com]", "no recipient")
	}
	for _, t := range o.To {
		if _, err := mail.ParseAddress(t); err != nil {
			return nil, bad("write to: [security@example.com]", "recipient %s is not an email address", textsafe.Quote(t))
		}
	}
	return &Email{Base: b, o: o, host: host}, nil
}

func (e *Email) Describe() string {
	return textsafe.Quote(fmt.Sprintf("email %s to %s", e.o.Addr, strings.Join(e.o.To, ", ")))
}

func (e *Email) Send(ctx context.Context, m Message) error {
	_, err := e.Deliver(ctx, m)
	return err
}

func (e *Email) fail(hint, format string, args ...any) error {
	return e.failf("email", hint, format, args...)
}

// Deliver sends m: connect, STARTTLS (or TLS), AUTH PLAIN, MAIL, RCPT, DATA.
func (e *Email) Deliver(ctx context.Context, m Message) (string, error) {
	tlsCfg, err := e.tlsConfig()
	if err != nil {
		return "", err
	}
	deadline := time.Now().Add(e.timeout())
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	dialer := &net.Dialer{Deadline: deadline}
	conn, err := dialer.DialContext(ctx, "tcp", e.o.Addr)
	if err != nil {
		return "", e.fail("check smtp: and that the server is reachable from here", "cannot connect to %s: %s", textsafe.Quote(e.o.Addr), e.netErr(err))
	}
	defer conn.Close()
	_ = conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	if e.o.TLS == TLSImplicit {
		tc := tls.Client(conn, tlsCfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			return "", e.fail("check ca_file and the server's certificate", "TLS with %s failed: %s", e.host, e.netErr(err))
		}
		conn = tc
	}
	c, err := smtp.NewClient(conn, e.host)
	if err != nil {
		return "", e.fail("check that smtp: names an SMTP server", "no SMTP greeting from %s: %s", textsafe.Quote(e.o.Addr), e.netErr(err))
	}
	defer c.Close()
	if err := e.session(c, tlsCfg, m); err != nil {
		return "", err
	}
	_ = c.Quit()
	return "250 accepted", nil
}

// session runs the SMTP dialogue after the greeting.
func (e *Email) session(c *smtp.Client, tlsCfg *tls.Config, m Message) error {
	if err := c.Hello("localhost"); err != nil {
		return e.fail("check that smtp: names an SMTP server", "EHLO refused: %s", e.netErr(err))
	}
	if e.o.TLS == TLSStartTLS {
		if ok, _ := c.Extension("STARTTLS"); !ok {
			return e.fail("use a server that offers STARTTLS, or tls: implicit for port 465", "the server does not offer STARTTLS: refusing to send without TLS")
		}
		if err := c.StartTLS(tlsCfg); err != nil {
			return e.fail("check ca_file and the server's certificate (its name must be the host of smtp:)", "STARTTLS failed: %s", e.netErr(err))
		}
	}
	if !e.o.Password.IsZero() {
		if ok, _ := c.Extension("AUTH"); !ok {
			return e.fail("remove password_secret, or use a server that offers AUTH", "the server offers no AUTH")
		}
		if err := c.Auth(smtp.PlainAuth("", e.o.Username, e.o.Password.RevealString(), e.host)); err != nil {
			return e.fail("check username and the secret password_secret names", "authentication failed: %s", e.netErr(err))
		}
	}
	if err := c.Mail(e.o.From); err != nil {
		return e.fail("check from:", "the server refused the sender: %s", e.netErr(err))
	}
	for _, to := range e.o.To {
		if err := c.Rcpt(to); err != nil {
			return e.fail("check to:", "the server refused recipient %s: %s", textsafe.Quote(to), e.netErr(err))
		}
	}
	w, err := c.Data()
	if err != nil {
		return e.fail("", "the server refused the message: %s", e.netErr(err))
	}
	if _, err := w.Write(e.render(m)); err != nil {
		return e.fail("", "sending the message failed: %s", e.netErr(err))
	}
	if err := w.Close(); err != nil {
		return e.fail("", "the server refused the message: %s", e.netErr(err))
	}
	return nil
}

// netErr is err's text, redacted (a server may echo what it was sent) and
// made safe for a terminal.
func (e *Email) netErr(err error) string {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Sprintf("no answer within %s", e.timeout())
	}
	s := err.Error()
	if !e.o.Password.IsZero() {
		s = strings.ReplaceAll(s, e.o.Password.RevealString(), rekey.Redacted)
	}
	return textsafe.Quote(cut(e.redact(s), 300))
}

func (e *Email) tlsConfig() (*tls.Config, error) {
	cfg := &tls.Config{ServerName: e.host, MinVersion: tls.VersionTLS12}
	if e.o.CAFile == "" {
		return cfg, nil
	}
	pem, err := os.ReadFile(e.o.CAFile)
	if err != nil {
		return nil, e.fail("ca_file names a PEM file of CA certificates", "cannot read ca_file: %v", textsafe.Lines(errors.Unwrap(err).Error()))
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, e.fail("ca_file names a PEM file of CA certificates", "ca_file holds no PEM certificate")
	}
	cfg.RootCAs = pool
	return cfg, nil
}

// render is the message as RFC 5322 text: headers (the subject
// Q-encoded, no line break possible in any of them) and the body in
// quoted-printable UTF-8.
func (e *Email) render(m Message) []byte {
	var b bytes.Buffer
	hdr := func(k, v string) { fmt.Fprintf(&b, "%s: %s\r\n", k, oneLine(v)) }
	hdr("From", e.o.From)
	hdr("To", strings.Join(e.o.To, ", "))
	hdr("Subject", mime.QEncoding.Encode("utf-8", fmt.Sprintf("[rekey %s] %s (%s)", m.Severity, m.Title, m.Environment)))
	hdr("Date", e.now().Format(time.RFC1123Z))
	hdr("Message-ID", "<"+oneLine(m.IdempotencyKey)+"@rekey>")
	hdr("X-Rekey-Event", m.Event)
	hdr("X-Rekey-Idempotency-Key", m.IdempotencyKey)
	hdr("MIME-Version", "1.0")
	hdr("Content-Type", "text/plain; charset=utf-8")
	hdr("Content-Transfer-Encoding", "quoted-printable")
	b.WriteString("\r\n")
	qp := quotedprintable.NewWriter(&b)
	_, _ = qp.Write([]byte(strings.ReplaceAll(PlainText(m), "\n", "\r\n")))
	_ = qp.Close()
	return b.Bytes()
}

// PlainText renders m for a person: the text, then the details.
func PlainText(m Message) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n\n%s\n\n", m.Title, m.Text)
	fmt.Fprintf(&b, "Environment: %s\nSeverity:    %s\nEvent:       %s\n", m.Environment, m.Severity, m.Event)
	if m.IncidentID != "" {
		fmt.Fprintf(&b, "Incident:    %s\n", m.IncidentID)
	}
	if !m.Time.IsZero() {
		fmt.Fprintf(&b, "Time:        %s\n", m.Time.UTC().Format(time.RFC3339))
	}
	if len(m.Secrets) > 0 {
		b.WriteString("\nSecrets (names and fingerprints only):\n")
		for _, s := range m.Secrets {
			fmt.Fprintf(&b, "  %s v%d %s\n", s.Name, s.Version, s.Fingerprint)
		}
	}
	if m.Command != "" {
		fmt.Fprintf(&b, "\nNext: %s\n", m.Command)
	}
	fmt.Fprintf(&b, "\n-- \nrekey · idempotency key %s\n", m.IdempotencyKey)
	return b.String()
}

// oneLine replaces line breaks and other controls with spaces (a header
// cannot be split into two).
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}
