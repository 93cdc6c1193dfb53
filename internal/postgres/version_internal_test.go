package postgres

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// TestMD5LoginWarning: PostgreSQL 19 warns at each login with an MD5
// password (18 does not: the majors rekey is tested on never send it).
// The warning marks the role, for the note SetPassword gives when it
// replaces the password, and is not passed on raw; 18's warning when an
// MD5 password is set is passed on as a note.
func TestMD5LoginWarning(t *testing.T) {
	var said []string
	n := notesFrom(WithNotes(context.Background(), func(s string) { said = append(said, s) }))
	h := n.onNotice("app", [][]byte{[]byte("pw")})
	h(nil, &pgconn.Notice{Severity: "WARNING", SeverityUnlocalized: "WARNING", Code: "01000",
		Message: "authenticated with an MD5-encrypted password",
		Detail:  "MD5 password support is deprecated and will be removed in a future release of PostgreSQL."})
	if !n.hadMD5("app") || len(said) != 0 {
		t.Fatalf("login warning: md5 %v, notes %q", n.hadMD5("app"), said)
	}
	h(nil, &pgconn.Notice{Severity: "WARNUNG", SeverityUnlocalized: "WARNING", Message: "setting an MD5-encrypted password",
		Detail: "MD5 password support is deprecated and will be removed in a future release of PostgreSQL."})
	want := `PostgreSQL warns (session of role "app"): setting an MD5-encrypted password (MD5 password support is deprecated and will be removed in a future release of PostgreSQL)`
	if len(said) != 1 || said[0] != want {
		t.Fatalf("notes = %q, want [%q]", said, want)
	}
	if WithNotes(context.Background(), nil) != context.Background() {
		t.Error("WithNotes(nil) installs notes")
	}
}
