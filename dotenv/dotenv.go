// Package dotenv reads and edits .env files without disturbing their bytes.
//
// The accepted syntax is the subset that Rust dotenvy, Node dotenv,
// python-dotenv and Go godotenv agree on:
//
//   - blank lines and full-line comments ("# ...", possibly indented);
//   - bindings KEY=value, with an optional "export " prefix and optional
//     spaces or tabs around "=";
//   - unquoted values: the rest of the line, trailing spaces and tabs
//     trimmed; a "#" preceded by a space or tab starts an inline comment;
//   - single-quoted values: literal, may span lines;
//   - double-quoted values: backslash escapes, may span lines;
//   - a comment after a closing quote;
//   - LF or CRLF line endings (each line keeps its own), a missing final
//     newline and a UTF-8 byte order mark at the start of the file.
//
// Key names match [A-Za-z_][A-Za-z0-9_.]*.
//
// Anything else is refused with a *ParseError instead of guessed at: a key
// defined twice, an unterminated quote, a non-blank non-comment line without
// "=", an invalid key name, text after a closing quote that is neither
// whitespace nor a comment, and a carriage return that is not part of a CRLF
// line ending.
//
// Some accepted lines are read differently by the four parsers; Get then
// follows the majority or, on a tie, the rule above. Unquoted values are
// literal (dotenvy alone reads quotes, backslashes and spaces in them
// shell-style). "KEY=#x" is the value "#x", while "KEY= #x" is empty
// (godotenv and python-dotenv read "#x"). A single-quoted value ends at the
// next quote, backslash or not. Double-quoted values decode \n \r \t \" \\
// \' \$ and keep any other backslash. Variable references are never
// expanded. Set never writes any of these ambiguous forms.
//
// Secret hygiene: no error produced by this package ever contains a value
// from the file or a value passed to Set or Quote. Key names, file names and
// line numbers may appear.
package dotenv

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

const bom = "\xEF\xBB\xBF"

// ParseError reports input that Parse refuses. It names the file and the
// 1-based line; it never contains a value from the file.
type ParseError struct {
	File string // the name given to Parse
	Line int    // 1-based line number
	Msg  string // what is wrong, lowercase, without a value
	Hint string // how to fix it, for the CLI to print as "hint: ..."; may be empty
}

// Error returns "FILE:LINE: MSG" ("line LINE: MSG" when File is empty).
// The hint is not included.
func (e *ParseError) Error() string {
	if e.File == "" {
		return fmt.Sprintf("line %d: %s", e.Line, e.Msg)
	}
	return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
}

// ErrNotPortable is wrapped by the errors of Quote and Set for a value that
// cannot be written so that all common dotenv parsers read it back
// identically. The error says why (for example "contains a single quote")
// but never includes the value.
var ErrNotPortable = errors.New("value cannot be written portably")

// File is a parsed .env file. It keeps every byte of the input; edits
// through Set and Delete touch only the lines of the key being edited.
// A File is not safe for concurrent use.
type File struct {
	bom     bool
	entries []*entry
	byKey   map[string]*entry
}

// entry is one blank line, one comment line, or one binding (which spans
// several physical lines when its quoted value does). raw holds the exact
// bytes including the final line ending, if any. For a binding, raw is
// split as raw[:vs] prefix (indent, export, key, spacing, "=", spacing),
// raw[vs:ve] value token (with its quotes), raw[ve:te] trail (spaces and an
// optional comment), raw[te:] line ending ("", "\n" or "\r\n").
type entry struct {
	raw   []byte
	key   string // "" for blank and comment lines
	value string // decoded value
	quote byte   // 0, '\'' or '"'
	vs    int
	ve    int
	te    int
}

func (e *entry) trail() []byte { return e.raw[e.ve:e.te] }
func (e *entry) eol() []byte   { return e.raw[e.te:] }

// Parse parses data, the contents of a .env file. name is used only in
// error messages. Parse never modifies data and keeps no reference to it.
// Errors are of type *ParseError.
func Parse(name string, data []byte) (*File, error) {
	f := &File{byKey: make(map[string]*entry)}
	body := data
	if bytes.HasPrefix(body, []byte(bom)) {
		f.bom = true
		body = body[len(bom):]
	}
	body = bytes.Clone(body)
	p := &parser{name: name, data: body, line: 1}
	if err := p.checkCR(); err != nil {
		return nil, err
	}
	defined := make(map[string]int)
	for p.pos < len(p.data) {
		startLine := p.line
		e, err := p.next()
		if err != nil {
			return nil, err
		}
		if e.key != "" {
			if first, dup := defined[e.key]; dup {
				return nil, p.errorf(startLine, "remove one of the two definitions",
					"duplicate key %s (first defined on line %d)", e.key, first)
			}
			defined[e.key] = startLine
			f.byKey[e.key] = e
		}
		f.entries = append(f.entries, e)
	}
	return f, nil
}

type parser struct {
	name string
	data []byte
	pos  int
	line int
}

func (p *parser) errorf(line int, hint, format string, args ...any) *ParseError {
	return &ParseError{File: p.name, Line: line, Msg: fmt.Sprintf(format, args...), Hint: hint}
}

// checkCR refuses a carriage return that does not start a CRLF line ending:
// Node and python-dotenv read it as a line break, godotenv only sometimes.
func (p *parser) checkCR() error {
	line := 1
	for i, c := range p.data {
		switch c {
		case '\n':
			line++
		case '\r':
			if i+1 == len(p.data) || p.data[i+1] != '\n' {
				return p.errorf(line, "use LF or CRLF line endings",
					"carriage return not followed by a line feed")
			}
		}
	}
	return nil
}

// lineEnd returns, for the physical line containing offset from, the end of
// its content (before "\r\n" or "\n") and the offset just past its line
// ending.
func (p *parser) lineEnd(from int) (contentEnd, next int) {
	i := bytes.IndexByte(p.data[from:], '\n')
	if i < 0 {
		return len(p.data), len(p.data)
	}
	next = from + i + 1
	contentEnd = from + i
	if contentEnd > from && p.data[contentEnd-1] == '\r' {
		contentEnd--
	}
	return contentEnd, next
}

func isWS(c byte) bool { return c == ' ' || c == '\t' }

func skipWS(b []byte, i int) int {
	for i < len(b) && isWS(b[i]) {
		i++
	}
	return i
}

// validKey reports whether key matches [A-Za-z_][A-Za-z0-9_.]*.
func validKey(key string) bool {
	if key == "" {
		return false
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		switch {
		case c == '_', 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z':
		case i > 0 && ('0' <= c && c <= '9' || c == '.'):
		default:
			return false
		}
	}
	return true
}

func (p *parser) next() (*entry, error) {
	start := p.pos
	startLine := p.line
	cEnd, next := p.lineEnd(start)
	content := p.data[start:cEnd]

	i := skipWS(content, 0)
	if i == len(content) || content[i] == '#' {
		return p.take(&entry{}, start, next), nil
	}

	eq := bytes.IndexByte(content, '=')
	if eq < 0 {
		return nil, p.errorf(startLine, "write KEY=value, or start the line with # to make it a comment",
			"line is not blank, not a comment and has no \"=\"")
	}
	name := bytes.TrimRight(content[i:eq], " \t")
	if rest, ok := bytes.CutPrefix(name, []byte("export")); ok && len(rest) > 0 && isWS(rest[0]) {
		name = bytes.TrimLeft(rest, " \t")
	}
	if !validKey(string(name)) {
		return nil, p.errorf(startLine, "key names must match [A-Za-z_][A-Za-z0-9_.]*",
			"invalid key name")
	}
	e := &entry{key: string(name)}

	vs := skipWS(content, eq+1)
	if vs < len(content) && (content[vs] == '\'' || content[vs] == '"') {
		q := content[vs]
		closeAt := -1
		for j := start + vs + 1; j < len(p.data); j++ {
			c := p.data[j]
			if q == '"' && c == '\\' {
				j++ // skip the escaped byte
				continue
			}
			if c == q {
				closeAt = j
				break
			}
		}
		if closeAt < 0 {
			kind := "single"
			if q == '"' {
				kind = "double"
			}
			return nil, p.errorf(startLine, fmt.Sprintf("add the missing closing %c (a quoted value may span lines)", q),
				"unterminated %s-quoted value of %s", kind, e.key)
		}
		cEnd2, next2 := p.lineEnd(closeAt)
		k := skipWS(p.data[:cEnd2], closeAt+1)
		if k < cEnd2 && p.data[k] != '#' {
			line := startLine + bytes.Count(p.data[start:closeAt], []byte("\n"))
			return nil, p.errorf(line, "quote the whole value, or put a space and # before a comment",
				"unexpected text after the closing quote of %s", e.key)
		}
		e.quote = q
		e.vs = vs
		e.ve = closeAt + 1 - start
		e.te = cEnd2 - start
		e.value = decode(p.data[start+vs+1:closeAt], q)
		return p.take(e, start, next2), nil
	}

	// Unquoted: a '#' preceded by a space or tab starts a comment.
	end := len(content)
	for k := vs; k < len(content); k++ {
		if content[k] == '#' && isWS(content[k-1]) {
			end = k
			break
		}
	}
	ve := end
	for ve > vs && isWS(content[ve-1]) {
		ve--
	}
	if ve == vs {
		// Empty value: the spacing after "=" belongs to the trail.
		vs, ve = eq+1, eq+1
	}
	e.vs, e.ve, e.te = vs, ve, len(content)
	e.value = string(content[vs:ve])
	return p.take(e, start, next), nil
}

func (p *parser) take(e *entry, start, next int) *entry {
	e.raw = p.data[start:next:next]
	if e.key == "" {
		e.te = len(e.raw)
	}
	p.pos = next
	p.line += bytes.Count(e.raw, []byte("\n"))
	return e
}

// decode returns the value of a quoted token's contents. Line breaks inside
// the quotes are normalized to "\n". Double-quoted values decode the escapes
// \n \r \t \" \\ \' \$; any other backslash is kept as is.
func decode(b []byte, q byte) string {
	s := strings.ReplaceAll(string(b), "\r\n", "\n")
	if q != '"' || !strings.Contains(s, `\`) {
		return s
	}
	var sb strings.Builder
	sb.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 == len(s) {
			sb.WriteByte(c)
			continue
		}
		i++
		switch n := s[i]; n {
		case 'n':
			sb.WriteByte('\n')
		case 'r':
			sb.WriteByte('\r')
		case 't':
			sb.WriteByte('\t')
		case '"', '\\', '\'', '$':
			sb.WriteByte(n)
		default:
			sb.WriteByte('\\')
			sb.WriteByte(n)
		}
	}
	return sb.String()
}

// Bytes returns the file's contents. For a File that was not modified by
// Set or Delete, the result is byte-identical to the data given to Parse.
// The caller may modify the returned slice.
func (f *File) Bytes() []byte {
	n := 0
	if f.bom {
		n = len(bom)
	}
	for _, e := range f.entries {
		n += len(e.raw)
	}
	out := make([]byte, 0, n)
	if f.bom {
		out = append(out, bom...)
	}
	for _, e := range f.entries {
		out = append(out, e.raw...)
	}
	return out
}

// Keys returns the defined keys in file order.
func (f *File) Keys() []string {
	keys := make([]string, 0, len(f.byKey))
	for _, e := range f.entries {
		if e.key != "" {
			keys = append(keys, e.key)
		}
	}
	return keys
}

// Get returns the value of key as dotenv parsers read it: quotes removed,
// escapes in double-quoted values decoded, line breaks inside quotes
// normalized to "\n". Variable references ($VAR, ${VAR}) are returned
// literally, not expanded.
func (f *File) Get(key string) (string, bool) {
	e, ok := f.byKey[key]
	if !ok {
		return "", false
	}
	return e.value, true
}

// Line returns the 1-based line on which key is defined (the first line of
// a multi-line value), or 0 if key is not defined.
func (f *File) Line(key string) int {
	if _, ok := f.byKey[key]; !ok {
		return 0
	}
	line := 1
	for _, e := range f.entries {
		if e.key == key {
			return line
		}
		line += bytes.Count(e.raw, []byte("\n"))
	}
	return 0
}

// Set gives key the value value. An existing binding is rewritten in place:
// every other line keeps every byte, and the binding's line keeps its
// indentation, "export" prefix, spacing around "=", inline comment and line
// ending (a multi-line value becomes a single line). A missing key is
// appended as KEY=value with the file's dominant line ending; if the file
// did not end with a newline, one is added first.
//
// The value is written unquoted if it is non-empty and consists only of
// A-Za-z0-9 and _-.:/+=@%,~?&*!^[] (in the old quote style if the old value
// was quoted), and in single quotes otherwise. A value that no form can
// carry portably (see Quote) is refused with an error wrapping
// ErrNotPortable, and the file is left unchanged.
func (f *File) Set(key, value string) error {
	if !validKey(key) {
		return fmt.Errorf("invalid key name %q", key)
	}
	e := f.byKey[key]
	if e == nil {
		tok, err := encode(value, 0, nil)
		if err != nil {
			return fmt.Errorf("set %s: %w", key, err)
		}
		eol := f.dominantEOL()
		if n := len(f.entries); n > 0 {
			if last := f.entries[n-1]; !bytes.HasSuffix(last.raw, []byte("\n")) {
				last.raw = append(slices.Clip(last.raw), eol...)
			}
		}
		ne := &entry{key: key, value: value, quote: quoteOf(tok)}
		ne.raw = []byte(key + "=" + tok + eol)
		ne.vs = len(key) + 1
		ne.ve = ne.vs + len(tok)
		ne.te = ne.ve
		f.entries = append(f.entries, ne)
		f.byKey[key] = ne
		return nil
	}

	trail := e.trail()
	tok, err := encode(value, e.quote, trail)
	if err != nil {
		return fmt.Errorf("set %s: %w", key, err)
	}
	var raw []byte
	raw = append(raw, e.raw[:e.vs]...)
	raw = append(raw, tok...)
	ve := len(raw)
	if len(trail) > 0 && trail[0] == '#' {
		// "a"#c is a comment for most parsers but not for dotenvy; make it
		// unambiguous now that the line is rewritten anyway.
		raw = append(raw, ' ')
	}
	raw = append(raw, trail...)
	te := len(raw)
	raw = append(raw, e.eol()...)
	e.raw, e.ve, e.te = raw, ve, te
	e.value = value
	e.quote = quoteOf(tok)
	return nil
}

func quoteOf(tok string) byte {
	if tok != "" && (tok[0] == '\'' || tok[0] == '"') {
		return tok[0]
	}
	return 0
}

// Delete removes the binding of key, all of its lines including the line
// ending, and reports whether key was defined.
func (f *File) Delete(key string) bool {
	e, ok := f.byKey[key]
	if !ok {
		return false
	}
	delete(f.byKey, key)
	f.entries = slices.DeleteFunc(f.entries, func(x *entry) bool { return x == e })
	return true
}

// dominantEOL returns the line ending used by most lines: "\r\n" if CRLF
// endings outnumber LF-only endings, else "\n".
func (f *File) dominantEOL() string {
	crlf, lf := 0, 0
	for _, e := range f.entries {
		n := bytes.Count(e.raw, []byte("\n"))
		c := bytes.Count(e.raw, []byte("\r\n"))
		crlf += c
		lf += n - c
	}
	if crlf > lf {
		return "\r\n"
	}
	return "\n"
}

// isPlain reports whether v can be written without quotes.
func isPlain(v string) bool {
	if v == "" {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		case strings.IndexByte("_-.:/+=@%,~?&*!^[]", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// Quote returns the token Set would write for value on a new line: value
// itself if it is non-empty and made only of A-Za-z0-9 and
// _-.:/+=@%,~?&*!^[] characters, "" for the empty value, and value in
// single quotes otherwise. It refuses, with an error wrapping
// ErrNotPortable, a value that would not read back identically in dotenvy,
// Node dotenv, python-dotenv and godotenv: one that contains a single
// quote, a line break, a NUL byte, "${" (python-dotenv expands it even in
// single quotes), two consecutive backslashes (python-dotenv unescapes them
// in single quotes), ends with a backslash (godotenv and python-dotenv take
// \' as an escaped quote), or is not valid UTF-8.
func Quote(value string) (string, error) {
	return encode(value, 0, nil)
}

// encode returns the token for value on a line whose old value had quote
// style old and is followed by trail.
func encode(value string, old byte, trail []byte) (string, error) {
	hash := bytes.IndexByte(trail, '#')
	if value == "" {
		if old != 0 || hash >= 0 {
			// KEY= # comment reads as "# comment" in godotenv and python-dotenv.
			return "''", nil
		}
		return "", nil
	}
	if isPlain(value) {
		switch {
		case old == '\'':
			return "'" + value + "'", nil
		case old == '"':
			return `"` + value + `"`, nil
		case hash >= 0 && bytes.IndexByte(trail[hash+1:], '#') >= 0:
			// godotenv takes the last " #" of an unquoted line as the start
			// of the comment.
			return "'" + value + "'", nil
		}
		return value, nil
	}
	if err := checkSingleQuotable(value); err != nil {
		return "", err
	}
	return "'" + value + "'", nil
}

func checkSingleQuotable(v string) error {
	var reason string
	switch {
	case !utf8.ValidString(v):
		reason = "it is not valid UTF-8"
	case strings.Contains(v, "'"):
		reason = "it contains a single quote"
	case strings.ContainsAny(v, "\r\n"):
		reason = "it contains a line break"
	case strings.Contains(v, "\x00"):
		reason = "it contains a NUL byte"
	case strings.Contains(v, "${"):
		reason = `it contains "${"`
	case strings.Contains(v, `\\`):
		reason = "it contains two consecutive backslashes"
	case strings.HasSuffix(v, `\`):
		reason = "it ends with a backslash"
	default:
		return nil
	}
	return fmt.Errorf("%w: %s", ErrNotPortable, reason)
}
