package rekey

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// Template is a derived-value template: literal text with `{{ NAME }}` or
// `{{ NAME | filter | filter }}` references to managed secrets.
//
// Filters:
//   - urlquery: percent-encode for a URL query or userinfo (space as %20)
//   - urlpath: percent-encode for a URL path segment
//   - json: a JSON string body (without the quotes)
//   - pgquote: a libpq keyword value (host=… password=…): single-quoted,
//     with \ and ' escaped by a backslash
//   - jwt: a JSON Web Token signed with the value as an HS256 key (its
//     bytes as they are), claims {"sub": "rekey-probe", "iat": now, "exp":
//     now + 5 minutes}: what a check presents to prove which JWT secret an
//     application accepts (JWTFilter). It changes at every render, so only
//     checks may use it, never a derived value. jwt384 and jwt512 sign
//     with HS384 and HS512, for applications that accept only those.
type Template struct {
	src   string
	parts []tmplPart
}

type tmplPart struct {
	lit     string
	ref     string
	filters []string
}

// Filters lists the template filters.
var Filters = []string{"urlquery", "urlpath", "json", "pgquote", JWTFilter, "jwt384", "jwt512"}

// JWTFilter is the filter that turns a secret into a token signed with it
// (HS256; jwt384 and jwt512 are its HS384 and HS512 forms: JWTFilters).
const JWTFilter = "jwt"

// JWTFilters are the filters that sign a token with the secret, by the
// JWS algorithm each uses.
var JWTFilters = map[string]string{JWTFilter: "HS256", "jwt384": "HS384", "jwt512": "HS512"}

// JWTProbeSubject is the subject of the tokens the jwt filter makes.
const JWTProbeSubject = "rekey-probe"

var tmplRef = regexp.MustCompile(`\{\{\s*([A-Za-z_][A-Za-z0-9_.]*)\s*((?:\|\s*[a-z][a-z0-9]*\s*)*)\}\}`)

// MustParseTemplate is ParseTemplate for a text known to be valid (a
// literal, a test's): it panics on an error.
func MustParseTemplate(src string) *Template {
	t, err := ParseTemplate(src)
	if err != nil {
		panic(err)
	}
	return t
}

// ParseTemplate parses src. The error names the problem, never a value.
func ParseTemplate(src string) (*Template, error) {
	t := &Template{src: src}
	rest := src
	for {
		loc := tmplRef.FindStringSubmatchIndex(rest)
		if loc == nil {
			if strings.Contains(rest, "{{") || strings.Contains(rest, "}}") {
				return nil, Errorf(CodeInvalid, "malformed {{ }} reference").WithHint("write {{ NAME }} or {{ NAME | urlquery }}")
			}
			if rest != "" {
				t.parts = append(t.parts, tmplPart{lit: rest})
			}
			return t, nil
		}
		if loc[0] > 0 {
			lit := rest[:loc[0]]
			if strings.Contains(lit, "{{") || strings.Contains(lit, "}}") {
				return nil, Errorf(CodeInvalid, "malformed {{ }} reference").WithHint("write {{ NAME }} or {{ NAME | urlquery }}")
			}
			t.parts = append(t.parts, tmplPart{lit: lit})
		}
		p := tmplPart{ref: rest[loc[2]:loc[3]]}
		for _, f := range strings.Split(rest[loc[4]:loc[5]], "|") {
			f = strings.TrimSpace(f)
			if f == "" {
				continue
			}
			if !validFilter(f) {
				return nil, Errorf(CodeInvalid, "unknown filter %q", f).WithHint("filters: %s", strings.Join(Filters, ", "))
			}
			p.filters = append(p.filters, f)
		}
		t.parts = append(t.parts, p)
		rest = rest[loc[1]:]
	}
}

// pgQuoter escapes a libpq keyword value for single quotes.
var pgQuoter = strings.NewReplacer(`\`, `\\`, `'`, `\'`)

func validFilter(f string) bool {
	for _, v := range Filters {
		if v == f {
			return true
		}
	}
	return false
}

// Source is the template text.
func (t *Template) Source() string { return t.src }

// Refs lists the secret names the template references, in order, without repeats.
func (t *Template) Refs() []string {
	var out []string
	seen := map[string]bool{}
	for _, p := range t.parts {
		if p.ref != "" && !seen[p.ref] {
			seen[p.ref] = true
			out = append(out, p.ref)
		}
	}
	return out
}

// Render fills the template from values. A missing reference is an error naming it.
func (t *Template) Render(values map[string]Value) (Value, error) {
	var b strings.Builder
	for _, p := range t.parts {
		if p.ref == "" {
			b.WriteString(p.lit)
			continue
		}
		v, ok := values[p.ref]
		if !ok {
			return Value{}, Errorf(CodeNotFound, "template references %s, which has no value", p.ref)
		}
		s := v.RevealString()
		for _, f := range p.filters {
			switch f {
			case "urlquery":
				s = strings.ReplaceAll(url.QueryEscape(s), "+", "%20")
			case "urlpath":
				s = url.PathEscape(s)
			case "json":
				j, _ := json.Marshal(s)
				s = string(j[1 : len(j)-1])
			case "pgquote":
				s = "'" + pgQuoter.Replace(s) + "'"
			case JWTFilter, "jwt384", "jwt512":
				s = probeToken(JWTFilters[f], []byte(s), time.Now())
			default:
				return Value{}, fmt.Errorf("unknown filter %q", f)
			}
		}
		b.WriteString(s)
	}
	return NewValueString(b.String()), nil
}

// Uses says whether the template applies filter f to any reference; f ==
// JWTFilter stands for every filter of JWTFilters.
func (t *Template) Uses(f string) bool { return t.UsesOn("", f) }

// UsesOn says whether the template applies filter f to a reference to ref
// (any reference when ref is "").
func (t *Template) UsesOn(ref, f string) bool {
	for _, p := range t.parts {
		if ref != "" && p.ref != ref {
			continue
		}
		for _, pf := range p.filters {
			if pf == f || f == JWTFilter && JWTFilters[pf] != "" {
				return true
			}
		}
	}
	return false
}

// probeToken is a JWT under key with alg (HS256, HS384 or HS512): header
// {"alg":alg,"typ":"JWT"}, claims {"sub":"rekey-probe","iat":now,"exp":now+5m}.
func probeToken(alg string, key []byte, now time.Time) string {
	enc := base64.RawURLEncoding
	claims := fmt.Sprintf(`{"sub":%q,"iat":%d,"exp":%d}`, JWTProbeSubject, now.Unix(), now.Add(5*time.Minute).Unix())
	signing := enc.EncodeToString([]byte(`{"alg":"`+alg+`","typ":"JWT"}`)) + "." + enc.EncodeToString([]byte(claims))
	h := sha256.New
	switch alg {
	case "HS384":
		h = sha512.New384
	case "HS512":
		h = sha512.New
	}
	m := hmac.New(h, key)
	m.Write([]byte(signing))
	return signing + "." + enc.EncodeToString(m.Sum(nil))
}

// SplitRef splits a template reference into the secret it names and the
// version attribute it reads: "DATABASE_PASSWORD.role" → ("DATABASE_PASSWORD",
// "role"); a plain name has no attribute.
func SplitRef(ref string) (name, attr string) {
	if i := strings.IndexByte(ref, '.'); i >= 0 {
		return ref[:i], ref[i+1:]
	}
	return ref, ""
}
