package rekey

import (
	"net/url"
	"regexp"
	"sort"
	"strings"
)

// Connection strings and their credentials. `rekey init` turns a connection
// string that embeds managed secrets into a derived value whose template is
// written to rekey.yaml, a file meant to hold no secret: every credential of
// the string must then be a reference to a managed secret, never text.

// Forms of connection strings.
const (
	connURL     = "url"     // scheme://[user[:password]@]host[:port][/path][?k=v&...][#fragment]
	connKeyword = "keyword" // libpq's: host=db user=app password='...' dbname=x
)

// connCred is one credential of a connection string.
type connCred struct {
	where      string // what it is, for messages: "password", "query parameter sslpassword", "keyword password"
	start, end int    // the bytes of the value as written (keyword form: with its quotes)
	value      string // decoded
}

// credentialName reports whether a URL query parameter or libpq keyword
// carries a credential. Parameters that name a file (sslkey, sslcert,
// sslrootcert, sslcrl, passfile) are paths, not credentials: the file they
// name is the secret, and it never gets into rekey.yaml.
var reCredentialName = regexp.MustCompile(`(?i)^(ssl)?pass(word|wd)?$|^pwd$|secret|token|^(api|access|auth|private|client)[_-]?key$|^key$|^sig(nature)?$|^x-amz-(signature|credential|security-token)$|credential`)

func credentialName(name string) bool {
	switch strings.ToLower(name) {
	case "sslkey", "sslcert", "sslrootcert", "sslcrl", "sslcrldir", "passfile", "sslpassword_file":
		return false
	}
	return reCredentialName.MatchString(name)
}

// connCredentials finds the credentials of v, a connection string in URL or
// libpq keyword form: the URL's userinfo password and its credential query
// parameters, or the credential keywords. form is "" when v is neither. ok is
// false when v seems to hold a credential whose bytes cannot be located
// exactly (an unencoded '/', '?' or '#' in a password, a malformed
// percent-encoding, an unterminated quote): such a value must be handled
// whole, never spliced.
func connCredentials(v string) (creds []connCred, form string, ok bool) {
	if creds, isURL, ok := urlCredentials(v); isURL {
		return creds, connURL, ok
	}
	if creds, isKW, ok := keywordCredentials(v); isKW {
		return creds, connKeyword, ok
	}
	if reKeywordPassword.MatchString(v) {
		return nil, "", false
	}
	return nil, "", true
}

var (
	reScheme          = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.\-]*$`)
	reKeywordPassword = regexp.MustCompile(`(?i)(^|\s)(ssl)?password\s*=`)
)

// urlCredentials splits v the way net/url and libpq do — the authority ends
// at the first '/', '?' or '#'; the userinfo is what precedes its last '@';
// the password follows the userinfo's first ':' — and checks the password
// against net/url's.
func urlCredentials(v string) (creds []connCred, isURL, ok bool) {
	i := strings.Index(v, "://")
	if i <= 0 || !reScheme.MatchString(v[:i]) {
		return nil, false, true
	}
	ok = true
	rest := i + 3
	end := len(v)
	if h := strings.IndexByte(v[rest:], '#'); h >= 0 {
		end = rest + h
	}
	qs := end
	if q := strings.IndexByte(v[rest:end], '?'); q >= 0 {
		qs = rest + q
	}
	authEnd := qs
	if s := strings.IndexByte(v[rest:qs], '/'); s >= 0 {
		authEnd = rest + s
	}
	auth := v[rest:authEnd]
	var password string
	hasPassword := false
	if at := strings.LastIndexByte(auth, '@'); at >= 0 {
		if c := strings.IndexByte(auth[:at], ':'); c >= 0 && c+1 < at {
			raw := auth[c+1 : at]
			dec, err := url.PathUnescape(raw)
			if err != nil {
				return nil, true, false
			}
			password, hasPassword = dec, true
			creds = append(creds, connCred{where: "password", start: rest + c + 1, end: rest + at, value: dec})
		}
	} else if c := strings.IndexByte(auth, ':'); c >= 0 && strings.Contains(v[authEnd:], "@") && !allDigits(auth[c+1:]) {
		// scheme://user:pa/ss@host: an unencoded '/', '?' or '#' cut the
		// password short; where it ends cannot be known.
		return nil, true, false
	}
	// net/url must see the same password (it refuses some bytes libpq
	// accepts; then there is nothing to compare).
	if u, err := url.Parse(v); err == nil && u.User != nil {
		if p, has := u.User.Password(); has != hasPassword || p != password {
			return nil, true, false
		}
	}
	if qs < end {
		off := qs + 1
		for _, kv := range strings.Split(v[qs+1:end], "&") {
			k, val, _ := strings.Cut(kv, "=")
			name, err := url.PathUnescape(k)
			if err != nil {
				name = k
			}
			if val != "" && credentialName(name) {
				// libpq decodes %XX and keeps '+' as is.
				dec, err := url.PathUnescape(val)
				if err != nil {
					return nil, true, false
				}
				creds = append(creds, connCred{where: "query parameter " + name, start: off + len(k) + 1, end: off + len(kv), value: dec})
			}
			off += len(kv) + 1
		}
	}
	return creds, true, ok
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

var reKeyword = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// keywordCredentials parses v as libpq's keyword/value form (keywords in
// lower case; a value is single-quoted, with \' and \\, or ends at white
// space) and returns its credential keywords. isKW is false when v does not
// parse as that form.
func keywordCredentials(v string) (creds []connCred, isKW, ok bool) {
	space := func(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v' }
	i, n, pairs := 0, len(v), 0
	for {
		for i < n && space(v[i]) {
			i++
		}
		if i == n {
			break
		}
		ks := i
		for i < n && v[i] != '=' && !space(v[i]) {
			i++
		}
		key := v[ks:i]
		if !reKeyword.MatchString(key) {
			return nil, false, true
		}
		for i < n && space(v[i]) {
			i++
		}
		if i == n || v[i] != '=' {
			return nil, false, true
		}
		i++
		for i < n && space(v[i]) {
			i++
		}
		vs := i
		var b strings.Builder
		if i < n && v[i] == '\'' {
			i++
			closed := false
			for i < n {
				c := v[i]
				if c == '\\' && i+1 < n {
					b.WriteByte(v[i+1])
					i += 2
					continue
				}
				i++
				if c == '\'' {
					closed = true
					break
				}
				b.WriteByte(c)
			}
			if !closed {
				return nil, false, true
			}
		} else {
			for i < n && !space(v[i]) {
				if v[i] == '\\' && i+1 < n {
					i++
				}
				b.WriteByte(v[i])
				i++
			}
		}
		pairs++
		if b.Len() > 0 && credentialName(key) {
			creds = append(creds, connCred{where: "keyword " + key, start: vs, end: i, value: b.String()})
		}
	}
	return creds, pairs > 0, true
}

// connTemplate is what deriveConn decided about a connection string.
type connTemplate struct {
	derived   *Derived // every credential is a managed secret's value
	managed   []string // the secrets it holds
	unmanaged []string // what holds a credential rekey does not manage
}

// deriveConn returns the template of a connection string whose every
// credential is the value of one of secrets: each credential's bytes become
// {{ NAME | urlquery }} (URL) or {{ NAME | pgquote }} (keyword form), the
// rest is kept as written. It refuses (unmanaged set) a string holding a
// credential that is no managed secret's value, one it cannot locate, and one
// whose remaining text still holds a credential or a managed value (a user
// name equal to the password). ok is false when v holds no credential.
func deriveConn(key, v string, secrets map[string]string) (ct connTemplate, ok bool) {
	creds, form, located := connCredentials(v)
	if !located {
		return connTemplate{unmanaged: []string{"a credential whose extent is ambiguous (percent-encode the special characters of its password)"}}, true
	}
	if len(creds) == 0 {
		return connTemplate{}, false
	}
	names := make([]string, 0, len(secrets))
	for n := range secrets {
		names = append(names, n)
	}
	sort.Strings(names)
	refs := make([]string, len(creds))
	for i, c := range creds {
		for _, n := range names {
			if secrets[n] != "" && secrets[n] == c.value {
				refs[i] = n
				break
			}
		}
		if refs[i] == "" {
			ct.unmanaged = append(ct.unmanaged, c.where)
		} else {
			ct.managed = append(ct.managed, refs[i])
		}
	}
	if len(ct.unmanaged) > 0 {
		return ct, true
	}
	filter := "urlquery"
	if form == connKeyword {
		filter = "pgquote"
	}
	var src, lit strings.Builder
	prev := 0
	for i, c := range creds {
		src.WriteString(v[prev:c.start])
		lit.WriteString(v[prev:c.start])
		lit.WriteByte(0)
		src.WriteString("{{ " + refs[i] + " | " + filter + " }}")
		prev = c.end
	}
	src.WriteString(v[prev:])
	lit.WriteString(v[prev:])
	// The text kept must hold no credential and no managed value, in any
	// form a URL gives it.
	needles := map[string]bool{}
	for _, c := range creds {
		if len(c.value) >= 4 {
			needles[c.value] = true
		}
	}
	for _, sv := range secrets {
		if len(sv) >= 8 {
			needles[sv] = true
		}
	}
	for nd := range needles {
		for _, f := range []string{nd, url.QueryEscape(nd), url.PathEscape(nd), url.UserPassword("", nd).String()[1:]} {
			if f != "" && strings.Contains(lit.String(), f) {
				return connTemplate{managed: ct.managed, unmanaged: []string{"a credential repeated in its other parts (a user name equal to the password?)"}}, true
			}
		}
	}
	t, err := ParseTemplate(src.String())
	if err != nil {
		return connTemplate{managed: ct.managed, unmanaged: []string{"text rekey cannot template ({{ or }})"}}, true
	}
	// The template gives the application the same credentials.
	vals := map[string]Value{}
	for i, c := range creds {
		vals[refs[i]] = NewValueString(c.value)
	}
	r, err := t.Render(vals)
	if err == nil {
		got, gotForm, gotOK := connCredentials(r.RevealString())
		same := gotOK && gotForm == form && len(got) == len(creds)
		for i := 0; same && i < len(got); i++ {
			same = got[i].value == creds[i].value && got[i].where == creds[i].where
		}
		if !same {
			err = Errorf(CodeInternal, "template does not round-trip")
		}
	}
	if err != nil {
		return connTemplate{managed: ct.managed, unmanaged: []string{"a credential rekey cannot template exactly"}}, true
	}
	ct.derived = &Derived{Name: key, Template: t}
	return ct, true
}
