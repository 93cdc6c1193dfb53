package config

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/rekeyhq/rekey"
)

// This file writes the ready-to-uncomment stanzas `rekey init` leaves in
// rekey.yaml: services: and checks: at the end of the file, sessions:
// under a signing secret, reencrypt: under a data key. Each stanza is a
// run of lines starting with "# " (at the indentation of where it goes);
// removing that "# " from each of its lines gives a valid rekey.yaml.
// Notes start with "##" and stay comments when a stanza is uncommented.

// Suggestions are what `rekey init` found, to fill the stanzas with.
type Suggestions struct {
	// Service is the service found to restart: a systemd unit
	// (Systemd) or a compose service (ComposeService in ComposeFile,
	// relative to the project); Found says where it was found. Empty
	// ServiceName: nothing was found, the stanza is an example.
	ServiceName, Systemd, ComposeFile, ComposeService, Found string
	SystemdUser                                              bool // Systemd is a user unit (systemctl --user)
	// DatabaseURL names the secret or derived value holding the
	// application's PostgreSQL URL ("" = none).
	DatabaseURL string
	// Port is the application's port, from the .env ("" = none): an http
	// check is suggested on it.
	Port string
	// Columns are the encrypted columns found, by data key.
	Columns map[string]DetectedColumns
	// ColumnsNote is a note about the detection for every data key (what
	// was sampled, or why nothing was); "" = none.
	ColumnsNote string
}

// DetectedColumns are the columns found encrypted under one data key.
type DetectedColumns struct {
	Columns  []string // table.column (schema.table.column outside public)
	Encoding string   // base64, base64url or bytea
	KeyID    bool     // the values carry rekey's key-id header
	Opened   bool     // the values open with the data key (else a guess from their shape)
	Notes    []string // how they were found
}

// StanzaIntro is the first note of the trailer Stanzas writes.
const StanzaIntro = "## Ready-to-uncomment stanzas, filled with what `rekey init` found."

// Stanzas returns the commented stanzas for c: services: and checks: (each
// unless c declares some), sessions: under each signing secret and
// reencrypt: under each data key without them.
func Stanzas(c *Config, s Suggestions) Comments {
	cm := Comments{Secrets: map[string][]string{}}
	var t []string
	if len(c.Services) == 0 {
		t = append(t, "##", "## services: restarted after a rotation changes what they read.")
		t = append(t, serviceStanza(s)...)
	}
	if checks := checkStanza(c, s); len(c.Checks) == 0 && len(checks) > 0 {
		t = append(t, "##", "## checks: run after every rotation (and by `rekey verify`); a failure rolls the rotation back.")
		t = append(t, checks...)
	}
	if len(t) > 0 {
		t = append([]string{StanzaIntro,
			`## To use one, remove the leading "# " of its lines (the "##" lines are notes),`,
			"## then review it and run `rekey config trust`."}, t...)
		cm.Trailer = t
	}
	signing := signingSecrets(c.Secrets)
	for _, sp := range c.Secrets {
		switch {
		case sp.Kind == rekey.KindGenerated && sp.Sessions == nil && signing[sp.Name]:
			cm.Secrets[sp.Name] = []string{
				"## sessions: what a rotation does to the sessions (tokens) signed with the old value.",
				"## graceful: " + sp.Name + "_PREVIOUS holds the old value for grace (no shorter than the longest",
				"## token lifetime); immediate (the default): every session ends at once.",
				"# sessions:",
				"#   mode: graceful",
				"#   grace: 1d",
			}
		case sp.Kind == rekey.KindDataKey && sp.Reencrypt == nil:
			if b := reencryptStanza(sp.Name, s); len(b) > 0 {
				cm.Secrets[sp.Name] = b
			}
		}
	}
	return cm
}

var reSigning = regexp.MustCompile(`(?i)JWT|SESSION|SIGN|COOKIE|HMAC|SECRET_KEY_BASE|TOKEN_SECRET`)

// signingSecrets are the generated secrets that sign sessions: those named
// like it, else the first generated secret.
func signingSecrets(specs []rekey.Spec) map[string]bool {
	out := map[string]bool{}
	first := ""
	for _, sp := range specs {
		if sp.Kind != rekey.KindGenerated {
			continue
		}
		if first == "" {
			first = sp.Name
		}
		if reSigning.MatchString(sp.Name) {
			out[sp.Name] = true
		}
	}
	if len(out) == 0 && first != "" {
		out[first] = true
	}
	return out
}

// The notes of a stanza are "##" lines above it, never at the end of one
// of its lines: uncommented, a stanza sits right below its notes, where a
// rewrite of rekey.yaml keeps them (see KeptComments).

const consumesNote = "consumes: all, or the list of what it reads ([JWT_SECRET, DATABASE_URL])."

func serviceStanza(s Suggestions) []string {
	switch {
	case s.ServiceName != "" && s.Systemd != "" && s.SystemdUser:
		u := yamlWord(s.Systemd)
		return []string{"## " + s.ServiceName + ": the user unit found at " + s.Found + "; " + consumesNote,
			"# services:", "#   " + s.ServiceName + ":",
			"#     restart: [systemctl, --user, restart, " + u + "]",
			"#     start: [systemctl, --user, start, " + u + "]",
			"#     stop: [systemctl, --user, stop, " + u + "]",
			"#     status: [systemctl, --user, is-active, --quiet, " + u + "]",
			"#     consumes: all"}
	case s.ServiceName != "" && s.Systemd != "":
		return []string{"## " + s.ServiceName + ": the unit found at " + s.Found + "; " + consumesNote,
			"# services:", "#   " + s.ServiceName + ":",
			"#     systemd: " + yamlWord(s.Systemd),
			"#     consumes: all"}
	case s.ServiceName != "" && s.ComposeService != "":
		return []string{"## " + s.ServiceName + ": the service found in " + s.Found + "; " + consumesNote,
			"# services:", "#   " + s.ServiceName + ":",
			"#     compose: {file: " + yamlWord(s.ComposeFile) + ", service: " + yamlWord(s.ComposeService) + "}",
			"#     consumes: all"}
	}
	return []string{"## No systemd unit or compose service named after the project was found: an example",
		"## (or systemd: UNIT, or compose: {service: NAME}); " + consumesNote,
		"# services:", "#   app:",
		"#     restart: [systemctl, restart, app.service]",
		"#     consumes: all"}
}

func checkStanza(c *Config, s Suggestions) []string {
	var out, notes []string
	if s.DatabaseURL != "" {
		notes = append(notes, "db logs in with the URL rekey publishes")
		out = append(out, "#   db:", "#     postgres: {url: "+s.DatabaseURL+"}")
		for _, sp := range c.Secrets {
			d, ok := s.Columns[sp.Name]
			if sp.Kind != rekey.KindDataKey || !ok || len(d.Columns) == 0 || !d.Opened {
				continue
			}
			name := strings.ToLower(strings.ReplaceAll(sp.Name, "_", "-")) + "-sample"
			notes = append(notes, name+" opens 10 values of "+d.Columns[0]+" with "+sp.Name)
			out = append(out, "#   "+name+":",
				fmt.Sprintf("#     decrypt-sample: {url: %s, column: %s, rows: 10, key: %s, codec: aes-256-gcm, encoding: %s}", s.DatabaseURL, d.Columns[0], sp.Name, d.Encoding))
		}
	}
	if s.Port != "" {
		notes = append(notes, "health: write the path of your health endpoint")
		out = append(out, "#   health:", `#     http: {url: "http://localhost:`+s.Port+`/health"}`)
	}
	if len(out) == 0 {
		return nil
	}
	return append([]string{"## " + strings.Join(notes, "; ") + ".", "# checks:"}, out...)
}

func reencryptStanza(name string, s Suggestions) []string {
	out := []string{"## reencrypt: the columns encrypted with " + name + ", re-encrypted by its rotation."}
	if s.DatabaseURL == "" {
		return append(out, "## It needs the database URL as a secret or derived value of rekey.yaml (database: DATABASE_URL).")
	}
	d, found := s.Columns[name]
	if s.ColumnsNote != "" {
		out = append(out, "## "+s.ColumnsNote+".")
	}
	cols, enc := "[TABLE.COLUMN]", "base64"
	if found && len(d.Columns) > 0 {
		cols, enc = "["+strings.Join(d.Columns, ", ")+"]", d.Encoding
		for _, n := range d.Notes {
			out = append(out, "## "+n+".")
		}
	} else {
		out = append(out, "## Replace TABLE.COLUMN with the encrypted columns (`rekey init --detect-columns` looks for them).")
	}
	out = append(out, "## codec: aes-256-gcm, chacha20-poly1305, fernet or command; mode: online, or maintenance (stop the services, re-encrypt, start them).")
	out = append(out, "## checkpoint_schema: where its resume checkpoint table is created, owned by the tables' owner (default: the first schema of the search_path).")
	if d.KeyID {
		out = append(out, "## key_id: the values carry rekey's key-id header.")
	}
	out = append(out, "# reencrypt:", "#   database: "+s.DatabaseURL, "#   codec: aes-256-gcm", "#   encoding: "+enc, "#   columns: "+cols)
	if d.KeyID {
		out = append(out, "#   key_id: true")
	}
	return append(out, "#   mode: online")
}

// yamlWord quotes s for a flow context when it is not a plain word.
func yamlWord(s string) string {
	if regexp.MustCompile(`^[A-Za-z0-9_./@-]+$`).MatchString(s) && !strings.HasPrefix(s, "-") {
		return s
	}
	return fmt.Sprintf("%q", s)
}

// ServiceName makes a service name (letters, digits, - and _) of a
// project folder's name; "" when nothing is left.
func ServiceName(dir string) string {
	b := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '-'
	}, dir)
	b = strings.TrimLeft(b, "-_")
	return b
}
