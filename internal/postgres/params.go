package postgres

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sort"
	"strconv"
	"strings"
)

// ErrInvalidURL is wrapped by ParseURL errors. Those errors never quote the
// URL or any part of it: it carries the password.
var ErrInvalidURL = errors.New("invalid database url")

// Params are the connection parameters of the role being rotated.
//
// Password is never printed: String, GoString, every fmt verb, slog and
// encoding/json all show it as [redacted].
type Params struct {
	Host     string // host name, IP address, or a unix socket directory (starts with /); "" means the default
	Port     int    // 0 means the default (5432)
	Database string
	User     string
	Password []byte
	SSLMode  string // disable, allow, prefer, require, verify-ca, verify-full; "" means the default (prefer)

	// Options holds the other query parameters of the URL (for example
	// application_name, connect_timeout, sslrootcert), so that URL() gives
	// them back and Connect uses them.
	Options url.Values

	scheme string // "postgres" or "postgresql", as parsed
}

func invalidURL(reason string) error {
	return fmt.Errorf("postgres: %w: %s", ErrInvalidURL, reason)
}

// ParseURL parses a DATABASE_URL of the form
//
//	postgres[ql]://[user[:password]@][host][:port][/dbname][?param=value&...]
//
// User, password, host and dbname are percent-decoded (a '+' stays a '+',
// as in libpq). A literal '@' in the password is tolerated (the last '@'
// before the host counts); '/', '?', '#' and ':' in user names or
// passwords must be percent-encoded. The query parameters host, port,
// dbname, user, password and sslmode override the URL's parts (as in
// libpq); the others go to Options. Several hosts are not supported.
func ParseURL(u string) (Params, error) {
	var p Params
	var rest string
	switch {
	case strings.HasPrefix(u, "postgresql://"):
		p.scheme, rest = "postgresql", u[len("postgresql://"):]
	case strings.HasPrefix(u, "postgres://"):
		p.scheme, rest = "postgres", u[len("postgres://"):]
	default:
		return Params{}, invalidURL("scheme must be postgres:// or postgresql://")
	}
	for i := 0; i < len(rest); i++ {
		if c := rest[i]; c < 0x20 || c == 0x7f {
			return Params{}, invalidURL("control character in url")
		}
	}
	if strings.Contains(rest, "#") {
		return Params{}, invalidURL("unencoded '#' (percent-encode it as %23)")
	}

	authPath, query, _ := strings.Cut(rest, "?")
	authority, path, _ := strings.Cut(authPath, "/")
	if !strings.Contains(authority, "@") && (strings.Contains(path, "@") || strings.Contains(query, "@")) {
		// postgres://user:pa/ss@host: the password cut the authority short.
		return Params{}, invalidURL("unencoded '/' or '?' before '@' (percent-encode special characters in the user name and password)")
	}
	if err := p.parseAuthority(authority); err != nil {
		return Params{}, err
	}
	var err error
	if p.Database, err = decodeString(path); err != nil {
		return Params{}, invalidURL("bad percent-encoding in the database name")
	}
	if err := p.parseQuery(query); err != nil {
		return Params{}, err
	}
	if strings.Contains(p.Host, ",") {
		return Params{}, invalidURL("several hosts are not supported")
	}
	switch p.SSLMode {
	case "", "disable", "allow", "prefer", "require", "verify-ca", "verify-full":
	default:
		return Params{}, invalidURL("unknown sslmode")
	}
	return p, nil
}

// parseAuthority sets the user, password, host and port of p from the
// authority of a URL ([user[:password]@][host][:port]).
func (p *Params) parseAuthority(authority string) error {
	hostport := authority
	if i := strings.LastIndex(authority, "@"); i >= 0 {
		userinfo := authority[:i]
		hostport = authority[i+1:]
		user, pass, hasPass := strings.Cut(userinfo, ":")
		var err error
		if p.User, err = decodeString(user); err != nil {
			return invalidURL("bad percent-encoding in the user name")
		}
		if hasPass {
			if p.Password, err = percentDecode(pass); err != nil {
				return invalidURL("bad percent-encoding in the password")
			}
		}
	}
	host, port, err := splitHostPort(hostport)
	if err != nil {
		return err
	}
	if p.Host, err = decodeString(host); err != nil {
		return invalidURL("bad percent-encoding in the host")
	}
	if port != "" {
		if p.Port, err = parsePort(port); err != nil {
			return err
		}
	}
	return nil
}

// splitHostPort splits host[:port] or [IPv6][:port]; one host only.
func splitHostPort(hostport string) (host, port string, err error) {
	if strings.Contains(hostport, ",") {
		return "", "", invalidURL("several hosts are not supported")
	}
	host = hostport
	if strings.HasPrefix(hostport, "[") {
		end := strings.Index(hostport, "]")
		if end < 0 {
			return "", "", invalidURL("missing ']' after an IPv6 address")
		}
		host, port = hostport[1:end], hostport[end+1:]
		if port != "" {
			if port[0] != ':' {
				return "", "", invalidURL("unexpected characters after an IPv6 address")
			}
			port = port[1:]
		}
	} else if h, pt, ok := strings.Cut(hostport, ":"); ok {
		host, port = h, pt
		if strings.Contains(port, ":") {
			return "", "", invalidURL("bad host:port (write IPv6 addresses in brackets)")
		}
	}
	return host, port, nil
}

// parseQuery applies the query parameters of a URL to p: host, port,
// dbname, user, password, sslmode and ssl override the URL's parts; the
// others go to Options.
func (p *Params) parseQuery(query string) error {
	if query == "" {
		return nil
	}
	for _, kv := range strings.Split(query, "&") {
		if kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return invalidURL("query parameter without '='")
		}
		key, err1 := decodeString(k)
		val, err2 := percentDecode(v)
		if err1 != nil || err2 != nil {
			return invalidURL("bad percent-encoding in a query parameter")
		}
		var err error
		switch key {
		case "":
			return invalidURL("query parameter without a name")
		case "host":
			p.Host = string(val)
		case "port":
			if p.Port, err = parsePort(string(val)); err != nil {
				return err
			}
		case "dbname":
			p.Database = string(val)
		case "user":
			p.User = string(val)
		case "password":
			p.Password = val
		case "sslmode":
			p.SSLMode = string(val)
		case "ssl":
			if string(val) != "true" {
				return invalidURL("ssl may only be true (use sslmode)")
			}
			p.SSLMode = "require"
		default:
			if p.Options == nil {
				p.Options = url.Values{}
			}
			p.Options.Set(key, string(val))
		}
	}
	return nil
}

func parsePort(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 {
		return 0, invalidURL("port must be a number from 1 to 65535")
	}
	return n, nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// percentDecode decodes %XX escapes; every other byte (including '+')
// stands for itself.
func percentDecode(s string) ([]byte, error) {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			out = append(out, s[i])
			continue
		}
		if i+2 >= len(s) {
			return nil, errors.New("truncated escape")
		}
		hi, ok1 := unhex(s[i+1])
		lo, ok2 := unhex(s[i+2])
		if !ok1 || !ok2 {
			return nil, errors.New("bad escape")
		}
		out = append(out, hi<<4|lo)
		i += 2
	}
	return out, nil
}

func decodeString(s string) (string, error) {
	b, err := percentDecode(s)
	return string(b), err
}

// percentEncode escapes every byte but RFC 3986's unreserved characters,
// so the result means the same to every URL parser (and a '$' cannot be
// expanded by a .env loader).
func percentEncode(b []byte) string {
	const hexDigits = "0123456789ABCDEF"
	var sb strings.Builder
	sb.Grow(len(b) * 3)
	for _, c := range b {
		if isUnreserved(c) {
			sb.WriteByte(c)
			continue
		}
		sb.WriteByte('%')
		sb.WriteByte(hexDigits[c>>4])
		sb.WriteByte(hexDigits[c&15])
	}
	return sb.String()
}

func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

// URL rebuilds a postgres:// URL (postgresql:// when parsed from one) with
// the user name and password percent-encoded in the userinfo. A socket
// directory goes to the host query parameter. The result carries the
// password: treat it as a secret.
func (p Params) URL() string {
	scheme := p.scheme
	if scheme == "" {
		scheme = "postgres"
	}
	var b strings.Builder
	b.WriteString(scheme)
	b.WriteString("://")
	if p.User != "" || len(p.Password) > 0 {
		b.WriteString(percentEncode([]byte(p.User)))
		if len(p.Password) > 0 {
			b.WriteByte(':')
			b.WriteString(percentEncode(p.Password))
		}
		b.WriteByte('@')
	}
	type kv struct{ k, v string }
	var query []kv
	switch {
	case p.Host == "":
	case strings.Contains(p.Host, ":") && !strings.HasPrefix(p.Host, "/"):
		b.WriteString("[" + p.Host + "]") // IPv6
	case isPlainHost(p.Host):
		b.WriteString(p.Host)
	default:
		query = append(query, kv{"host", p.Host}) // socket directory, or odd characters
	}
	if p.Port != 0 {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(p.Port))
	}
	if p.Database != "" {
		b.WriteByte('/')
		b.WriteString(percentEncode([]byte(p.Database)))
	}
	if p.SSLMode != "" {
		query = append(query, kv{"sslmode", p.SSLMode})
	}
	keys := make([]string, 0, len(p.Options))
	for k := range p.Options {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if reservedOption(k) {
			continue
		}
		for _, v := range p.Options[k] {
			query = append(query, kv{k, v})
		}
	}
	for i, q := range query {
		if i == 0 {
			b.WriteByte('?')
		} else {
			b.WriteByte('&')
		}
		b.WriteString(percentEncode([]byte(q.k)))
		b.WriteByte('=')
		b.WriteString(percentEncode([]byte(q.v)))
	}
	return b.String()
}

// reservedOption reports whether an Options key duplicates a Params field
// (those are ignored in Options).
func reservedOption(k string) bool {
	switch k {
	case "host", "port", "dbname", "user", "password", "sslmode", "ssl":
		return true
	}
	return false
}

func isPlainHost(h string) bool {
	for i := 0; i < len(h); i++ {
		if !isUnreserved(h[i]) {
			return false
		}
	}
	return true
}

// String describes p with the password redacted.
func (p Params) String() string {
	pw := "(none)"
	if len(p.Password) > 0 {
		pw = "[redacted]"
	}
	port := "default"
	if p.Port != 0 {
		port = strconv.Itoa(p.Port)
	}
	sslmode := p.SSLMode
	if sslmode == "" {
		sslmode = "default"
	}
	return fmt.Sprintf("host=%q port=%s dbname=%q user=%q password=%s sslmode=%s", p.Host, port, p.Database, p.User, pw, sslmode)
}

// GoString is String for %#v.
func (p Params) GoString() string { return "postgres.Params{" + p.String() + "}" }

// Format makes every fmt verb print the redacted form.
func (p Params) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		fmt.Fprint(f, p.GoString())
		return
	}
	fmt.Fprint(f, p.String())
}

// LogValue makes log/slog print the redacted form.
func (p Params) LogValue() slog.Value { return slog.StringValue(p.String()) }

// MarshalJSON encodes p with the password redacted.
func (p Params) MarshalJSON() ([]byte, error) {
	pw := ""
	if len(p.Password) > 0 {
		pw = "[redacted]"
	}
	return json.Marshal(struct {
		Host     string `json:"host,omitempty"`
		Port     int    `json:"port,omitempty"`
		Database string `json:"dbname,omitempty"`
		User     string `json:"user,omitempty"`
		Password string `json:"password,omitempty"`
		SSLMode  string `json:"sslmode,omitempty"`
	}{p.Host, p.Port, p.Database, p.User, pw, p.SSLMode})
}
