package postgres

import (
	"errors"
	"strings"
)

// maxIdentLen is NAMEDATALEN-1: the server silently truncates longer
// identifiers, which for ALTER ROLE could target a different role.
const maxIdentLen = 63

// QuoteIdent quotes name as a SQL identifier: always wrapped in double
// quotes, embedded double quotes doubled. Case and spaces are preserved.
func QuoteIdent(name string) string {
	return `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
}

// quoteLiteral quotes s as a standard-conforming SQL string literal.
func quoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// checkRoleName rejects role names the server would not take verbatim.
func checkRoleName(name string) error {
	switch {
	case name == "":
		return errors.New("postgres: empty role name")
	case strings.IndexByte(name, 0) >= 0:
		return errors.New("postgres: role name contains a nul byte")
	case len(name) > maxIdentLen:
		return errors.New("postgres: role name longer than 63 bytes (the server would truncate it)")
	}
	return nil
}
