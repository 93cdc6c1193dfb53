package rekey

import (
	"errors"
	"fmt"
)

// Code is one of a small closed set of error classes; cmd/rekey maps each to
// an exit status, once.
type Code int

// Error codes. Their exit codes are listed in `rekey --help`.
const (
	CodeInternal     Code = iota + 1 // a bug or an unexpected failure
	CodeInvalid                      // bad input: flags, rekey.yaml, .env
	CodeNotFound                     // no such secret, version, environment or file
	CodeConflict                     // the state forbids it: locked, drift, refused without --force
	CodeUnsafe                       // refused because it could lose data or leak a secret
	CodeAuth                         // wrong master key, damaged store
	CodeVerifyFailed                 // a rotation ran but its verification failed
)

// Error is an error with a code and an optional hint for the user.
// Its message never contains secret material.
type Error struct {
	Code Code
	Msg  string
	Hint string
	Err  error
}

func (e *Error) Error() string {
	if e.Err != nil && e.Msg != "" && isSentinel(e.Err) {
		return e.Msg // the message already says it; the sentinel is for errors.Is
	}
	if e.Err != nil {
		if e.Msg == "" {
			return e.Err.Error()
		}
		return e.Msg + ": " + e.Err.Error()
	}
	return e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error with a code and a formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// WithHint sets the hint and returns e.
func (e *Error) WithHint(format string, args ...any) *Error {
	e.Hint = fmt.Sprintf(format, args...)
	return e
}

// Wrap wraps err with a code and a message.
func Wrap(code Code, err error, format string, args ...any) *Error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...), Err: err}
}

// ErrorCode returns the code of the outermost *Error in err's chain, or CodeInternal.
func ErrorCode(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}

// ErrorHint returns the first hint found in err's chain.
func ErrorHint(err error) string {
	for err != nil {
		var e *Error
		if !errors.As(err, &e) {
			return ""
		}
		if e.Hint != "" {
			return e.Hint
		}
		err = e.Err
	}
	return ""
}

// Sentinel errors that stores and targets return.
var (
	ErrNotFound = &Error{Code: CodeNotFound, Msg: "not found"}
	ErrWrongKey = &Error{Code: CodeAuth, Msg: "wrong master key", Hint: "this store was sealed with another master key: set REKEY_MASTER_KEY or the key file named in rekey.yaml to the key printed by `rekey init`"}
	ErrCorrupt  = &Error{Code: CodeAuth, Msg: "store is damaged", Hint: "restore .rekey/ from a backup; nothing was changed"}
	ErrLocked   = &Error{Code: CodeConflict, Msg: "another rekey holds the lock"}
)

func isSentinel(err error) bool {
	return err == ErrNotFound || err == ErrWrongKey || err == ErrCorrupt || err == ErrLocked
}
