package main

import (
	"encoding/json"
	"errors"

	"github.com/spf13/cobra"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/textsafe"
)

// JSON output. Every command that reports something has --json (report and
// scan: --format json): one document on stdout, keys in snake_case. When
// such a command fails, its error is one JSON object on stderr, in place
// of the "rekey: error:" and "rekey: hint:" lines, and the exit status is
// the same as without --json:
//
//	{"error": {"code": "not_found", "message": "...", "hint": "...", "exit_code": 3}}
//
// Stdout keeps only the command's data (verify --json still prints the
// results of the checks that ran before one failed), so `rekey X --json |
// jq` never reads an error as data. Warnings stay "rekey: warning:" lines
// on stderr.

// jsonError is the object printed on stderr for an error under --json.
type jsonError struct {
	Error jsonErrorBody `json:"error"`
}

type jsonErrorBody struct {
	Code     string `json:"code"`
	Message  string `json:"message"`
	Hint     string `json:"hint,omitempty"`
	ExitCode int    `json:"exit_code"`
}

// errorCodeName is the code of an error as --json names it.
func errorCodeName(err error, exit int) string {
	switch {
	case exit == 130 || exit == 143:
		return "interrupted"
	case isUsage(err):
		return "usage"
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return "exit_status"
	}
	switch rekey.ErrorCode(err) {
	case rekey.CodeInvalid:
		return "invalid"
	case rekey.CodeNotFound:
		return "not_found"
	case rekey.CodeConflict:
		return "conflict"
	case rekey.CodeUnsafe:
		return "unsafe"
	case rekey.CodeAuth:
		return "auth"
	case rekey.CodeVerifyFailed:
		return "verify_failed"
	default:
		return "internal"
	}
}

// printJSONError prints err as a jsonError on stderr.
func (a *app) printJSONError(err error, exit int) {
	body := jsonErrorBody{Code: errorCodeName(err, exit), Message: textsafe.Lines(err.Error()), ExitCode: exit}
	if h := rekey.ErrorHint(err); h != "" {
		body.Hint = textsafe.Lines(h)
	} else if isUsage(err) {
		var ue *usageError
		errors.As(err, &ue)
		body.Hint = "see `" + cmdOr(ue.cmd) + " --help`"
	}
	b, jerr := json.Marshal(jsonError{Error: body})
	if jerr != nil {
		b = []byte(`{"error":{"code":"internal","message":"cannot encode the error","exit_code":1}}`)
	}
	a.m.Stderr.Write(append(b, '\n'))
}

func cmdOr(c string) string {
	if c == "" {
		return "rekey"
	}
	return c
}

// wantsJSON reports whether the command line asked c for JSON: --json, or
// --format json (report), --report-format json (scan).
func wantsJSON(c *cobra.Command) bool {
	if c == nil {
		return false
	}
	if f := c.Flags().Lookup("json"); f != nil && f.Value.String() == "true" {
		return true
	}
	for _, name := range []string{"format", "report-format"} {
		if f := c.Flags().Lookup(name); f != nil && f.Changed && f.Value.String() == "json" {
			return true
		}
	}
	return false
}
