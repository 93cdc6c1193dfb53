package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"

	"github.com/rekeyhq/rekey"
)

// Error is a problem in rekey.yaml (or in finding or reading it). It names
// the file and, when known, the line and column, and carries a hint for the
// user. Its message never contains a value from the file other than key
// names and short identifier-like words (kinds, encodings, durations).
//
// Error unwraps to a *rekey.Error with the same text and hint, so
// rekey.ErrorCode and rekey.ErrorHint work on it (code CodeInvalid, or
// CodeNotFound when the file does not exist), and to the underlying cause
// when there is one (an *fs.PathError from Load).
type Error struct {
	File      string
	Line, Col int
	Msg, Hint string

	code  rekey.Code
	err   error
	order [2]int // line and column for ordering errors, when not Line and Col
}

// Error formats the error as "file:line:col: msg", leaving out the parts
// that are not known.
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
	}
	if e.Line > 0 {
		if b.Len() == 0 {
			b.WriteString("rekey.yaml")
		}
		b.WriteString(":" + strconv.Itoa(e.Line))
		if e.Col > 0 {
			b.WriteString(":" + strconv.Itoa(e.Col))
		}
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Code is the rekey error code of e: CodeInvalid unless set otherwise.
func (e *Error) Code() rekey.Code {
	if e.code == 0 {
		return rekey.CodeInvalid
	}
	return e.code
}

// Unwrap returns a *rekey.Error carrying e's code, text and hint, and the
// cause of e if any.
func (e *Error) Unwrap() []error {
	errs := []error{&rekey.Error{Code: e.Code(), Msg: e.Error(), Hint: e.Hint}}
	if e.err != nil {
		errs = append(errs, e.err)
	}
	return errs
}

// before reports whether e comes before o in the file.
func (e *Error) before(o *Error) bool {
	a, b := e.position(), o.position()
	if a[0] != b[0] {
		return a[0] < b[0]
	}
	return a[1] < b[1]
}

func (e *Error) position() [2]int {
	if e.order != [2]int{} {
		return e.order
	}
	return [2]int{e.Line, e.Col}
}

// safeWord matches text that is safe to quote in a message: short, and made
// of characters that appear in names, kinds, durations and paths.
var safeWord = regexp.MustCompile(`^[A-Za-z0-9_.:/~ -]{1,40}$`)

// quote returns s quoted when it is safe to show, else "(not shown)".
func quote(s string) string {
	if safeWord.MatchString(s) {
		return strconv.Quote(s)
	}
	return "(not shown)"
}

// listOf joins names for a hint: "a, b, c".
func listOf[T ~string](names []T) string {
	s := make([]string, len(names))
	for i, n := range names {
		s[i] = string(n)
	}
	return strings.Join(s, ", ")
}

// closest returns the candidate nearest to s by edit distance, if it is near
// enough to be a plausible typo.
func closest[T ~string](s string, candidates []T) (string, bool) {
	best, bestD := "", -1
	ls := strings.ToLower(s)
	limit := max(1, min(3, utf8.RuneCountInString(s)/3))
	for _, c := range candidates {
		lc := strings.ToLower(string(c))
		d := rekey.EditDistance(ls, lc)
		if d > limit && min(len(ls), len(lc)) >= 3 && (strings.HasPrefix(ls, lc) || strings.HasPrefix(lc, ls)) {
			d = limit // "hostname" for "host", "PG_ADMIN" for "PG_ADMIN_URL"
		}
		if bestD < 0 || d < bestD {
			best, bestD = string(c), d
		}
	}
	return best, bestD >= 0 && bestD <= limit
}

// didYouMean returns "did you mean X? " when a candidate is close to s.
func didYouMean[T ~string](s string, candidates []T) string {
	if c, ok := closest(s, candidates); ok {
		return "did you mean " + c + "? "
	}
	return ""
}

// yamlLine matches yaml.v3's "yaml: line N: msg" errors.
var yamlLine = regexp.MustCompile(`^yaml: line ([0-9]+): (.*)$`)

// parserErrors are the yaml.v3 messages raised by its parser (not its
// scanner). yaml.v3 reports their line zero-based, one less than the line
// an editor shows.
var parserErrors = []string{
	"did not find expected <document start>",
	"did not find expected node content",
	"did not find expected key",
	"did not find expected '-' indicator",
	"did not find expected ',' or ']'",
	"did not find expected ',' or '}'",
	"found duplicate %YAML directive",
	"found incompatible YAML document",
	"found duplicate %TAG directive",
}

// syntaxError turns an error from yaml.v3 into an *Error at the best line
// that can be recovered: yaml's own line number, corrected for its quirks,
// or a line found by looking at the text for the few messages without one.
func syntaxError(file string, data []byte, err error) *Error {
	msg := err.Error()
	line := 0
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
	}
	isParser := false
	for _, p := range parserErrors {
		if msg == p {
			isParser = true
		}
	}
	// yaml.v3 reports the line where the enclosing construct starts (for
	// parser errors, zero-based), not the line of the problem, which is at
	// or after it. Find the problem line as the first line at which a prefix
	// of the file fails with the same message.
	from := max(line, 1)
	if isParser {
		line++ // the fallback: yaml's line, made one-based
	}
	if l := locate(data, msg, from); l > 0 {
		line = l
	}
	if line > 0 && line <= bytes.Count(data, []byte("\n"))+1 {
		l := bytes.Split(data, []byte("\n"))[line-1]
		if bytes.ContainsRune(l[:len(l)-len(bytes.TrimLeft(l, " \t"))], '\t') {
			msg = "indentation must use spaces, not tabs (" + msg + ")"
		}
	}
	if line == 0 {
		line = 1
	}
	return &Error{
		File: file,
		Line: line,
		Msg:  "YAML syntax error: " + msg,
		Hint: "check the indentation (spaces, not tabs) and quote values that contain \": \" or \" #\", or that start with { [ * & ! % @ or `",
	}
}

// Bounds of the search for the line of a syntax error.
const (
	locateMaxLines = 400
	locateMaxBytes = 64 << 10
)

// locate returns the first line, from line from on, such that the file cut
// after it fails to parse with message msg; 0 if there is none.
func locate(data []byte, msg string, from int) int {
	if len(data) > locateMaxBytes {
		return 0
	}
	lines := bytes.SplitAfter(data, []byte("\n"))
	end := 0
	for i, l := range lines {
		end += len(l)
		if i+1 < from {
			continue
		}
		if i+1 >= from+locateMaxLines {
			break
		}
		if err := yamlError(data[:end]); err != nil {
			m := err.Error()
			if sub := yamlLine.FindStringSubmatch(m); sub != nil {
				m = sub[2]
			}
			if strings.TrimPrefix(m, "yaml: ") == msg {
				return i + 1
			}
		}
	}
	return 0
}

// yamlError returns the error of parsing every document in data.
func yamlError(data []byte) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("yaml: panic")
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var n yaml.Node
		if err := dec.Decode(&n); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// kindName describes a YAML value's type for "must be X, not Y" messages.
func kindName(tag string) string {
	switch tag {
	case "!!map":
		return "a mapping"
	case "!!seq":
		return "a list"
	case "!!int", "!!float":
		return "a number"
	case "!!bool":
		return "true/false"
	case "!!null":
		return "empty"
	default:
		return "text"
	}
}

// errorf builds an Error outside the decoder (for Find and Load).
func errorf(file string, code rekey.Code, cause error, hint, format string, args ...any) *Error {
	return &Error{File: file, Msg: fmt.Sprintf(format, args...), Hint: hint, code: code, err: cause}
}
