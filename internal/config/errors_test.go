package config

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/rekeyhq/rekey"
)

// head is a valid start of a file (lines 1-5) that cases continue.
const head = `version: 1
environments:
  prod:
    targets:
      app: {type: dotenv, path: .env}
`

// gen is a valid secret entry, for cases that need one.
const gen = `  JWT_SECRET:
    kind: generated
    generator: {bytes: 32, encoding: base64}
`

// errorCases has one bad file per error class. The error is expected on the
// line marked "# <-", or on line `line` when the file cannot carry a marker.
var errorCases = []struct {
	name string
	yaml string
	line int
	msg  string // substring of Error.Msg
	hint string // substring of Error.Hint
}{
	// The file as a whole.
	{name: "empty file", yaml: "", line: 1, msg: "empty", hint: "rekey init --env-file .env"},
	{name: "only whitespace", yaml: "\n  \n", line: 1, msg: "empty", hint: "rekey init"},
	{name: "only comments", yaml: "# nothing yet\n", line: 1, msg: "empty", hint: "rekey init"},
	{name: "empty document", yaml: "---\n", line: 1, msg: "empty", hint: "rekey init"},
	{name: "two documents", yaml: head + "secrets:\n" + gen + "---\nversion: 1 # <-\n", msg: "more than one YAML document", hint: "remove the ---"},
	{name: "not a mapping", yaml: "- version # <-\n- 1\n", msg: "rekey.yaml must be a mapping of keys, not a list", hint: "version, store, environments, secrets, derived"},

	// YAML syntax errors, at the line an editor shows.
	{name: "syntax: unclosed flow mapping", yaml: head + "secrets:\n  JWT_SECRET: {kind: generated # <-\n  OTHER: {}\n", msg: "YAML syntax error: did not find expected ',' or '}'", hint: "indentation"},
	{name: "syntax: bad indentation", yaml: head + "secrets:\n" + gen + "   OTHER: {} # <-\n", msg: "YAML syntax error", hint: "indentation"},
	{name: "syntax: colon in plain value", yaml: head + "secrets:\n" + gen + "    purpose: a: b # <-\n", msg: "mapping values are not allowed", hint: "quote values"},
	{name: "syntax: colon on line 1", yaml: "version: 1: 2\n", line: 1, msg: "mapping values are not allowed", hint: "quote values"},
	{name: "syntax: tab indentation", yaml: head + "secrets:\n" + gen + "\tpurpose: x # <-\n", msg: "indentation must use spaces, not tabs", hint: "spaces, not tabs"},
	{name: "syntax: unknown alias", yaml: head + "secrets:\n" + gen + "    purpose: *nope # <-\n", msg: "unknown anchor 'nope'", hint: "indentation"},
	{name: "syntax: unterminated quote", yaml: head + "secrets:\n" + gen + "    purpose: \"x\n", line: 10, msg: "found unexpected end of stream", hint: "quote"},
	{name: "syntax: invalid UTF-8", yaml: head + "secrets:\n" + gen + "    purpose: \xff\xfe # <-\n", msg: "UTF-8", hint: "indentation"},

	// version.
	{name: "version missing", yaml: "environments: # <-\n  prod:\n    targets:\n      app: {path: .env}\nsecrets:\n" + gen, msg: "version is missing", hint: "version: 1"},
	{name: "version 2", yaml: "version: 2 # <-\n" + head[11:] + "secrets:\n" + gen, msg: `unsupported version "2"`, hint: "version: 1"},
	{name: "version as text", yaml: "version: one # <-\n" + head[11:] + "secrets:\n" + gen, msg: "version must be the number 1, not text", hint: "version: 1"},
	{name: "version empty", yaml: "version: # <-\n" + head[11:] + "secrets:\n" + gen, line: 1, msg: "version is missing", hint: "version: 1"},

	// Unknown keys, with suggestions.
	{name: "unknown key in secret", yaml: head + "secrets:\n" + gen + "    rotate_evry: 90d # <-\n", msg: `unknown key "rotate_evry" in secret JWT_SECRET`, hint: "did you mean rotate_every?"},
	{name: "unknown key at top level", yaml: head + "secret: # <-\n" + gen, msg: `unknown key "secret" at the top level`, hint: "did you mean secrets?"},
	{name: "unknown key far from any", yaml: head + "secrets:\n" + gen + "    zzzzzzzzz: 1 # <-\n", msg: `unknown key "zzzzzzzzz"`, hint: "valid keys here: purpose, kind, generator"},
	{name: "unknown key in target", yaml: "version: 1\nenvironments:\n  prod:\n    targets:\n      app: {type: dotenv, pth: .env} # <-\nsecrets:\n" + gen, msg: `unknown key "pth" in target app of environment prod`, hint: "did you mean path?"},
	{name: "unknown key in generator", yaml: head + "secrets:\n  K:\n    kind: generated\n    generator: {byte: 32} # <-\n", msg: `unknown key "byte" in generator of secret K`, hint: "did you mean bytes?"},
	{name: "unknown key in store", yaml: "version: 1\nstore:\n  master-key: env # <-\n" + head[11:] + "secrets:\n" + gen, msg: `unknown key "master-key" in store`, hint: "did you mean master_key?"},
	{name: "unknown key in postgres", yaml: head + "secrets:\n  DB:\n    kind: postgres-password\n    generator: {}\n    postgres:\n      hostname: db # <-\n", msg: `unknown key "hostname" in postgres settings of secret DB`, hint: "did you mean host?"},
	{name: "services as list", yaml: head + "secrets:\n" + gen + "services: [api] # <-\n", msg: "services must be a mapping of names, not a list", hint: "NAME:"},
	{name: "ssh target without host", yaml: "version: 1\nenvironments:\n  prod:\n    targets:\n      web1: {type: ssh, path: /srv/app/.env} # <-\nsecrets:\n" + gen, msg: "target web1 of environment prod has no host", hint: "user@host"},
	{name: "ssh target without path", yaml: "version: 1\nenvironments:\n  prod:\n    targets:\n      web1: {type: ssh, host: deploy@web1} # <-\nsecrets:\n" + gen, msg: "has no path", hint: "/srv/app/.env"},
	{name: "ssh target relative path", yaml: "version: 1\nenvironments:\n  prod:\n    targets:\n      web1: {type: ssh, host: deploy@web1, path: .env} # <-\nsecrets:\n" + gen, msg: "must be an absolute path on the host", hint: "/srv/app/.env"},
	{name: "ssh target option as host", yaml: "version: 1\nenvironments:\n  prod:\n    targets:\n      web1: {type: ssh, host: -oProxyCommand=x, path: /a} # <-\nsecrets:\n" + gen, msg: "host of target web1 of environment prod must be", hint: "deploy@web1"},
	{name: "host on a dotenv target", yaml: "version: 1\nenvironments:\n  prod:\n    targets:\n      app: {type: dotenv, host: web1, path: .env} # <-\nsecrets:\n" + gen, msg: "has a host but is not of type ssh", hint: "type: ssh"},
	{name: "log check with two logs", yaml: head + "secrets:\n" + gen + "checks:\n  logs:\n    log:\n      file: /var/log/a.log\n      journal: atlas # <-\n", msg: "log of check logs has both file and journal", hint: "one log per check"},
	{name: "log check without a log", yaml: head + "secrets:\n" + gen + "checks:\n  logs:\n    log: {window: 10s} # <-\n", msg: "log of check logs", hint: "journal: atlas.service"},
	{name: "log check bad pattern", yaml: head + "secrets:\n" + gen + "checks:\n  logs:\n    log: {file: /a.log, pattern: \"(?<=x)\"} # <-\n", msg: "pattern of log of check logs does not compile", hint: "RE2"},
	{name: "command target without read", yaml: "version: 1\nenvironments:\n  prod:\n    targets:\n      vault: {type: command, write: [./w]} # <-\nsecrets:\n" + gen, msg: "target vault of environment prod has no read command", hint: "drift"},
	{name: "command target with a path", yaml: "version: 1\nenvironments:\n  prod:\n    targets:\n      vault: {type: command, read: [./r], write: [./w], path: .env} # <-\nsecrets:\n" + gen, msg: "it has no path", hint: "read: and write:"},
	{name: "read on a dotenv target", yaml: "version: 1\nenvironments:\n  prod:\n    targets:\n      app: {type: dotenv, path: .env, read: [./r]} # <-\nsecrets:\n" + gen, msg: "has read but is not of type command", hint: "type: command"},
	{name: "stdin on an http check", yaml: head + "secrets:\n" + gen + "checks:\n  api:\n    http: {url: \"http://localhost/\"}\n    stdin: JWT_SECRET # <-\n", msg: "check api has stdin but is not a command check", hint: "for a command check"},
	{name: "stdin of an unknown secret", yaml: head + "secrets:\n" + gen + "checks:\n  api:\n    command: [./probe]\n    stdin: JWT_SECRT # <-\n", msg: "JWT_SECRT", hint: "JWT_SECRET"},
	{name: "unknown key in check", yaml: head + "secrets:\n" + gen + "checks:\n  db:\n    postgres: {url: JWT_SECRET}\n    retrys: 3 # <-\n", msg: `unknown key "retrys" in check db`, hint: "did you mean retries?"},
	{name: "reencrypt on a generated secret", yaml: head + "secrets:\n" + gen + "    reencrypt: {database: JWT_SECRET, columns: [t.c]} # <-\n", msg: "secret JWT_SECRET is kind generated: reencrypt is not used", hint: "kind data-key"},
	{name: "reencrypt without columns", yaml: head + "secrets:\n" + "  ENCRYPTION_KEY:\n    kind: data-key\n    generator: {bytes: 32, encoding: base64}\n" + "    reencrypt: {database: ENCRYPTION_KEY} # <-\n", msg: "has no columns", hint: "columns: [table.column"},
	{name: "reencrypt column without table", yaml: head + "secrets:\n" + "  ENCRYPTION_KEY:\n    kind: data-key\n    generator: {bytes: 32, encoding: base64}\n" + "    reencrypt:\n      database: ENCRYPTION_KEY\n      columns: [email] # <-\n", msg: `"email" has no table`, hint: "table.column"},
	{name: "reencrypt unknown codec", yaml: head + "secrets:\n" + "  ENCRYPTION_KEY:\n    kind: data-key\n    generator: {bytes: 32, encoding: base64}\n" + "    reencrypt:\n      database: ENCRYPTION_KEY\n      columns: [t.c]\n      codec: aes-gcm # <-\n", msg: "codec", hint: "aes-256-gcm"},
	{name: "reencrypt database unknown", yaml: head + "secrets:\n" + "  ENCRYPTION_KEY:\n    kind: data-key\n    generator: {bytes: 32, encoding: base64}\n" + "    reencrypt:\n      database: DATABASE_UR # <-\n      columns: [t.c]\n", msg: `references "DATABASE_UR", which is not a secret or derived value`, hint: "name a secret"},
	{name: "reencrypt command codec without command", yaml: head + "secrets:\n" + "  ENCRYPTION_KEY:\n    kind: data-key\n    generator: {bytes: 32, encoding: base64}\n" + "    reencrypt:\n      database: ENCRYPTION_KEY\n      columns: [t.c]\n      codec: command # <-\n", msg: "codec: command needs command", hint: "command: ["},
	{name: "sessions graceful without grace", yaml: head + "secrets:\n" + gen + "    sessions:\n      mode: graceful # <-\n", msg: "mode: graceful needs a grace period", hint: "grace: 24h"},
	{name: "sessions unknown mode", yaml: head + "secrets:\n" + gen + "    sessions:\n      mode: lazy # <-\n", msg: "mode", hint: "graceful"},
	{name: "sessions hook without database", yaml: head + "secrets:\n" + gen + "    sessions:\n      on_rotate:\n        - sql: DELETE FROM sessions # <-\n", msg: "sql needs database", hint: "database: DATABASE_URL"},
	{name: "sessions on a data key", yaml: head + "secrets:\n" + "  ENCRYPTION_KEY:\n    kind: data-key\n    generator: {bytes: 32, encoding: base64}\n" + "    sessions: {mode: immediate} # <-\n", msg: "is kind data-key: sessions is not used", hint: "signing secret"},
	{name: "misplaced generator key", yaml: head + "secrets:\n" + gen + "    bytes: 64 # <-\n", msg: `unknown key "bytes"`, hint: "bytes belongs under generator"},
	{name: "merge key", yaml: head + "secrets:\n" + gen + "    <<: {} # <-\n", msg: "merge keys (<<) are not supported", hint: "write the keys out"},

	// Wrong types.
	{name: "bytes as text", yaml: head + "secrets:\n  K:\n    kind: generated\n    generator: {bytes: sixty} # <-\n", msg: "bytes of generator of secret K must be a whole number, not text", hint: "bytes: 32"},
	{name: "bytes as float", yaml: head + "secrets:\n  K:\n    kind: generated\n    generator: {bytes: 32.5} # <-\n", msg: "must be a whole number, not a number", hint: "bytes: 32"},
	{name: "keep_versions as text", yaml: "version: 1\nstore:\n  keep_versions: all # <-\n" + head[11:] + "secrets:\n" + gen, msg: "keep_versions must be a whole number", hint: "keep_versions: 10"},
	{name: "keep_versions negative", yaml: "version: 1\nstore:\n  keep_versions: -1 # <-\n" + head[11:] + "secrets:\n" + gen, msg: "keep_versions must be 0 or more", hint: "keeps every version"},
	{name: "port out of range", yaml: head + "secrets:\n  DB:\n    kind: postgres-password\n    generator: {}\n    postgres: {port: 70000} # <-\n", msg: "port of secret DB must be between 1 and 65535", hint: "5432"},
	{name: "secret as text", yaml: head + "secrets:\n  K: generated # <-\n", msg: "secret K must be a mapping of keys, not text", hint: "expected keys: purpose, kind"},
	{name: "secrets as list", yaml: head + "secrets: # <-\n  - K\n", line: 7, msg: "secrets must be a mapping of names, not a list", hint: "NAME:"},
	{name: "targets not a list", yaml: head + "secrets:\n" + gen + "    targets: app # <-\n", msg: "targets of secret JWT_SECRET must be a list, not text", hint: "[app]"},
	{name: "targets empty list", yaml: head + "secrets:\n" + gen + "    targets: [] # <-\n", msg: "targets of secret JWT_SECRET is an empty list", hint: "remove targets"},
	{name: "targets listed twice", yaml: head + "secrets:\n" + gen + "    targets: [app,\n      app] # <-\n", msg: `lists "app" twice`, hint: "once"},
	{name: "purpose as mapping", yaml: head + "secrets:\n" + gen + "    purpose: {a: 1} # <-\n", msg: "purpose of secret JWT_SECRET must be text, not a mapping", hint: "text"},
	{name: "template as list", yaml: head + "secrets:\n" + gen + "derived:\n  URL: [a] # <-\n", msg: "derived value URL must be a template, not a list", hint: "text"},
	{name: "bytes too small", yaml: head + "secrets:\n  K:\n    kind: generated\n    generator: {bytes: 8} # <-\n", msg: "must be between 16 and 1024", hint: "32 bytes"},

	// Durations.
	{name: "duration in words", yaml: head + "secrets:\n" + gen + "    rotate_every: 90 days # <-\n", msg: `rotate_every of secret JWT_SECRET: bad duration "90 days"`, hint: "use 90d, 2w, 36h"},
	{name: "duration negative", yaml: head + "secrets:\n" + gen + "    rotate_every: -1d # <-\n", msg: "is negative", hint: "use 90d, 2w, 36h"},
	{name: "duration zero", yaml: head + "secrets:\n" + gen + "    rotate_every: 0d # <-\n", msg: "is zero", hint: "use 90d, 2w, 36h"},
	{name: "duration number", yaml: head + "secrets:\n" + gen + "    rotate_every: 90 # <-\n", msg: `bad duration "90"`, hint: "use 90d, 2w, 36h"},
	{name: "grace bad", yaml: head + "secrets:\n  DB:\n    kind: postgres-password\n    generator: {}\n    postgres:\n      strategy: alternating\n      roles: [a, b]\n      grace: soon # <-\n", msg: "grace of secret DB: bad duration", hint: "use 90d"},

	// Duplicate keys.
	{name: "duplicate key", yaml: head + "secrets:\n" + gen + "    kind: manual # <-\n", msg: `duplicate key "kind" in secret JWT_SECRET`, hint: "first set on line 8"},
	{name: "duplicate secret", yaml: head + "secrets:\n" + gen + "  JWT_SECRET: # <-\n    kind: manual\n", msg: `duplicate secret "JWT_SECRET" in secrets`, hint: "the first is on line 7"},
	{name: "duplicate environment", yaml: head + "  prod: # <-\n    targets: {app: {}}\nsecrets:\n" + gen, msg: `duplicate environment "prod"`, hint: "line 3"},
	{name: "duplicate top-level key", yaml: head + "secrets:\n" + gen + "version: 1 # <-\n", msg: `duplicate key "version" at the top level`, hint: "line 1"},

	// Enumerations.
	{name: "unknown kind", yaml: head + "secrets:\n  K:\n    kind: generatd # <-\n", msg: `unknown kind "generatd" for secret K`, hint: "did you mean generated? kinds: generated, postgres-password, data-key, manual"},
	{name: "kind misspelt, not missing", yaml: head + "secrets:\n  K:\n    knd: generated # <-\n    generator: {}\n", msg: `unknown key "knd" in secret K`, hint: "did you mean kind?"},
	{name: "kind missing", yaml: head + "secrets:\n  K: # <-\n    generator: {}\n", msg: "secret K has no kind", hint: "kind: generated"},
	{name: "unknown encoding", yaml: head + "secrets:\n  K:\n    kind: generated\n    generator: {encoding: base32} # <-\n", msg: `unknown encoding "base32" in generator of secret K`, hint: "encodings: base64, base64url, base64url-nopad, hex, alphanumeric"},
	{name: "unknown target type", yaml: "version: 1\nenvironments:\n  prod:\n    targets:\n      app: {type: json, path: x} # <-\nsecrets:\n" + gen, msg: `unknown target type "json"`, hint: "valid values: dotenv"},
	{name: "unknown sslmode", yaml: head + "secrets:\n  DB:\n    kind: postgres-password\n    generator: {}\n    postgres: {sslmode: requre} # <-\n", msg: `unknown sslmode "requre"`, hint: "did you mean require?"},
	{name: "unknown master_key", yaml: "version: 1\nstore:\n  master_key: environment # <-\n" + head[11:] + "secrets:\n" + gen, msg: "master_key is not env, file:PATH or passphrase", hint: `"file:PATH"`},
	{name: "master_key file without path", yaml: "version: 1\nstore:\n  master_key: \"file:\" # <-\n" + head[11:] + "secrets:\n" + gen, msg: "master_key file: has no path", hint: "file:PATH"},

	// Generator and kind rules.
	{name: "generator missing", yaml: head + "secrets:\n  K: # <-\n    kind: data-key\n", msg: "secret K (kind data-key) has no generator", hint: "generator: {bytes: 32, encoding: base64}"},
	{name: "generator forbidden", yaml: head + "secrets:\n  K:\n    kind: manual\n    generator: {bytes: 32} # <-\n", msg: "secret K is manual and cannot have a generator", hint: "rekey set"},
	{name: "rotate_every on manual", yaml: head + "secrets:\n  K:\n    kind: manual\n    rotate_every: 90d # <-\n", msg: "secret K is manual: rotate_every is not used", hint: "remind_every"},
	{name: "remind_every on generated", yaml: head + "secrets:\n" + gen + "    remind_every: 90d # <-\n", msg: "remind_every is not used", hint: "use rotate_every"},
	{name: "postgres on generated", yaml: head + "secrets:\n" + gen + "    postgres: {} # <-\n", msg: "secret JWT_SECRET is kind generated: postgres is not used", hint: "postgres-password"},

	// Templates.
	{name: "template unknown filter", yaml: head + "secrets:\n" + gen + "derived:\n  URL: x{{ JWT_SECRET | upper }} # <-\n", msg: `template of derived value URL: unknown filter "upper"`, hint: "filters: urlquery, urlpath, json"},
	{name: "template malformed", yaml: head + "secrets:\n" + gen + "derived:\n  URL: \"x{{ JWT_SECRET\" # <-\n", msg: "template of derived value URL: malformed {{ }} reference", hint: "{{ NAME }}"},
	{name: "template undefined secret", yaml: head + "secrets:\n" + gen + "derived:\n  URL: x{{ JWT_SECRT }} # <-\n", msg: `template of derived value URL references "JWT_SECRT", which is not a secret`, hint: "did you mean JWT_SECRET?"},
	{name: "template references derived", yaml: head + "secrets:\n" + gen + "derived:\n  A: x{{ JWT_SECRET }}\n  B: y{{ A }} # <-\n", msg: `template of derived value B references derived value "A"`, hint: "only secrets"},
	{name: "env template undefined secret", yaml: head + "    derived:\n      URL: x{{ NOPE }} # <-\nsecrets:\n" + gen, msg: `template of derived value URL of environment prod references "NOPE"`, hint: "define it under secrets"},
	{name: "derived named like a secret", yaml: head + "secrets:\n" + gen + "derived:\n  JWT_SECRET: x # <-\n", msg: "derived value JWT_SECRET has the name of a secret", hint: "rename one"},
	{name: "derived without template", yaml: head + "secrets:\n" + gen + "derived:\n  URL: # <-\n", msg: "derived value URL has no template", hint: "{{ DATABASE_PASSWORD | urlquery }}"},

	// Cross references.
	{name: "target not defined", yaml: head + "secrets:\n" + gen + "    targets: [web] # <-\n", msg: `target "web" of secret JWT_SECRET is not defined in environment prod`, hint: "prod defines: app"},
	{name: "target missing in one environment", yaml: head + "      web: {path: web.env}\n  staging:\n    targets:\n      app: {path: s.env}\nsecrets:\n" + gen + "    targets: [app, web] # <-\n", msg: `target "web" of secret JWT_SECRET is not defined in environment staging`, hint: "every environment"},
	{name: "url_from not derived", yaml: head + "secrets:\n  DB:\n    kind: postgres-password\n    generator: {}\n    postgres:\n      url_from: DATABASE_URI # <-\nderived:\n  DATABASE_URL: x{{ DB }}\n", msg: `url_from of secret DB: "DATABASE_URI" is not a derived value`, hint: "did you mean DATABASE_URL?"},
	{name: "url_from names a secret", yaml: head + "secrets:\n  DB:\n    kind: postgres-password\n    generator: {}\n    postgres: {url_from: DB} # <-\n", msg: "is not a derived value", hint: "not a secret"},
	{name: "url_from missing in an environment", yaml: head + "    derived:\n      DATABASE_URL: x{{ DB }}\n  staging:\n    targets: {app: {}}\nsecrets:\n  DB:\n    kind: postgres-password\n    generator: {}\n    postgres: {url_from: DATABASE_URL} # <-\n", msg: "is not defined for environment staging", hint: "every environment"},
	{name: "admin_secret not a secret", yaml: head + "secrets:\n  DB:\n    kind: postgres-password\n    generator: {}\n    postgres:\n      changed_by: admin\n      admin_secret: PG_ADMIN # <-\n  PG_ADMIN_URL:\n    kind: manual\n", msg: `admin_secret of secret DB: "PG_ADMIN" is not a managed secret`, hint: "did you mean PG_ADMIN_URL?"},
	{name: "admin without admin_secret", yaml: head + "secrets:\n  DB:\n    kind: postgres-password\n    generator: {}\n    postgres:\n      changed_by: admin # <-\n", msg: "changed_by: admin needs admin_secret", hint: "PG_ADMIN_URL"},
	{name: "admin_secret without admin", yaml: head + "secrets:\n  DB:\n    kind: postgres-password\n    generator: {}\n    postgres:\n      admin_secret: DB # <-\n", msg: "admin_secret without changed_by: admin", hint: "changed_by: admin"},
	{name: "alternating without roles", yaml: head + "secrets:\n  DB:\n    kind: postgres-password\n    generator: {}\n    postgres:\n      strategy: alternating # <-\n", msg: "strategy: alternating needs roles", hint: "[app_blue, app_green]"},
	{name: "alternating with one role", yaml: head + "secrets:\n  DB:\n    kind: postgres-password\n    generator: {}\n    postgres:\n      strategy: alternating\n      roles: [a] # <-\n", msg: "exactly two roles, not 1", hint: "exactly two"},
	{name: "alternating with the same role twice", yaml: head + "secrets:\n  DB:\n    kind: postgres-password\n    generator: {}\n    postgres:\n      strategy: alternating\n      roles: [a,\n        a] # <-\n", msg: `lists "a" twice`, hint: "once"},
	{name: "roles without alternating", yaml: head + "secrets:\n  DB:\n    kind: postgres-password\n    generator: {}\n    postgres:\n      roles: [a, b] # <-\n", msg: "roles without strategy: alternating", hint: "strategy: alternating"},

	// Required sections and names.
	{name: "environments missing", yaml: "version: 1 # <-\nsecrets:\n" + gen, msg: "environments is missing", hint: "environments: {production"},
	{name: "environments empty", yaml: "version: 1\nenvironments: {} # <-\nsecrets:\n" + gen, msg: "environments is empty", hint: "production"},
	{name: "secrets missing", yaml: head[:11] + "environments: # <-\n" + head[25:], line: 1, msg: "secrets is missing", hint: "JWT_SECRET"},
	{name: "secrets empty", yaml: head + "secrets: # <-\n", msg: "secrets is empty", hint: "JWT_SECRET"},
	{name: "environment without targets", yaml: "version: 1\nenvironments:\n  prod: # <-\nsecrets:\n" + gen, msg: "environment prod has no targets", hint: "targets: {app"},
	{name: "environment with empty targets", yaml: "version: 1\nenvironments:\n  prod:\n    targets: {} # <-\nsecrets:\n" + gen, msg: "environment prod has no targets", hint: "app: {type: dotenv"},
	{name: "bad environment name", yaml: "version: 1\nenvironments:\n  Prod: # <-\n    targets: {app: {}}\nsecrets:\n" + gen, msg: `invalid environment name "Prod"`, hint: "lower-case"},
	{name: "bad secret name", yaml: head + "secrets:\n  JWT-SECRET: # <-\n    kind: manual\n", msg: `invalid secret name "JWT-SECRET"`, hint: "environment variable names"},
	{name: "empty target path", yaml: "version: 1\nenvironments:\n  prod:\n    targets:\n      app: {path: \"\"} # <-\nsecrets:\n" + gen, msg: "path of target app of environment prod is empty", hint: "relative to the folder"},

	// Only the first error, in file order, whatever the order of checks.
	{name: "first error wins: reference before typo", yaml: "version: 1\nderived:\n  URL: x{{ NOPE }} # <-\n" + head[11:] + "secrets:\n" + gen + "    rotate_evry: 1d\n", msg: `references "NOPE"`, hint: "secrets"},
	{name: "first error wins: typo before reference", yaml: head + "secrets:\n" + gen + "    rotate_evry: 1d # <-\nderived:\n  URL: x{{ NOPE }}\n", msg: `unknown key "rotate_evry"`, hint: "rotate_every"},
	{name: "first error wins: same line, earlier column", yaml: head + "secrets:\n  K:\n    kind: generated\n    generator: {bytes: x, encoding: nope} # <-\n", msg: "bytes of generator", hint: "bytes: 32"},

	// notify.
	{name: "notify unknown channel type", yaml: head + "secrets:\n" + gen + "  HOOK: {kind: manual}\nnotify:\n  channels:\n" + "    ops: {type: webhok, url: \"https://x.example\", secret: HOOK} # <-\n", msg: `unknown channel type "webhok"`, hint: "did you mean webhook?"},
	{name: "notify channel without type", yaml: head + "secrets:\n" + gen + "  HOOK: {kind: manual}\nnotify:\n  channels:\n" + "    ops: # <-\n      url: https://x.example\n", msg: "channel ops has no type", hint: "type: webhook"},
	{name: "notify webhook without secret", yaml: head + "secrets:\n" + gen + "  HOOK: {kind: manual}\nnotify:\n  channels:\n" + "    ops: # <-\n      type: webhook\n      url: https://x.example\n", msg: "has no secret", hint: "signs deliveries"},
	{name: "notify webhook url and url_secret", yaml: head + "secrets:\n" + gen + "  HOOK: {kind: manual}\nnotify:\n  channels:\n" + "    ops: # <-\n      type: webhook\n      url: https://x.example\n      url_secret: HOOK\n      secret: HOOK\n", msg: "exactly one of url and url_secret", hint: "url_secret"},
	{name: "notify webhook url not http", yaml: head + "secrets:\n" + gen + "  HOOK: {kind: manual}\nnotify:\n  channels:\n" + "    ops:\n      type: webhook\n      url: ftp://x.example # <-\n      secret: HOOK\n", msg: "is not an http(s) URL", hint: "https://"},
	{name: "notify url with password", yaml: head + "secrets:\n" + gen + "  HOOK: {kind: manual}\nnotify:\n  channels:\n" + "    ops:\n      type: webhook\n      url: https://u:p@x.example # <-\n      secret: HOOK\n", msg: "holds user info", hint: "url_secret"},
	{name: "notify secret not managed", yaml: head + "secrets:\n" + gen + "  HOOK: {kind: manual}\nnotify:\n  channels:\n" + "    ops:\n      type: webhook\n      url: https://x.example\n      secret: HOOK_SECRT # <-\n", msg: `"HOOK_SECRT" is not a managed secret`, hint: "did you mean HOOK?"},
	{name: "notify slack with url", yaml: head + "secrets:\n" + gen + "  HOOK: {kind: manual}\nnotify:\n  channels:\n" + "    chat:\n      type: slack\n      url: https://hooks.slack.com/services/T/B/X # <-\n      url_secret: HOOK\n", msg: "url is not used by channel chat (a slack channel)", hint: "credential"},
	{name: "notify pagerduty without key", yaml: head + "secrets:\n" + gen + "  HOOK: {kind: manual}\nnotify:\n  channels:\n" + "    pager: {type: pagerduty} # <-\n", msg: "has no routing_key_secret", hint: "routing_key_secret: PAGERDUTY_ROUTING_KEY"},
	{name: "notify email bad smtp", yaml: head + "secrets:\n" + gen + "  HOOK: {kind: manual}\nnotify:\n  channels:\n" + "    mail:\n      type: email\n      smtp: smtp.example.com # <-\n      from: a@example.com\n      to: [b@example.com]\n", msg: "smtp of channel mail is not host:port", hint: "smtp.example.com:587"},
	{name: "notify email bad recipient", yaml: head + "secrets:\n" + gen + "  HOOK: {kind: manual}\nnotify:\n  channels:\n" + "    mail:\n      type: email\n      smtp: smtp.example.com:587\n      from: a@example.com\n      to: [security] # <-\n", msg: `"security" is not an email address`, hint: "security@example.com"},
	{name: "notify email password without tls", yaml: head + "secrets:\n" + gen + "  HOOK: {kind: manual}\nnotify:\n  channels:\n" + "    mail:\n      type: email\n      smtp: smtp.example.com:25\n      tls: none # <-\n      username: u\n      password_secret: HOOK\n      from: a@example.com\n      to: [b@example.com]\n", msg: "tls: none with password_secret", hint: "never sends a password without TLS"},
	{name: "notify email unknown tls", yaml: head + "secrets:\n" + gen + "  HOOK: {kind: manual}\nnotify:\n  channels:\n" + "    mail:\n      type: email\n      smtp: smtp.example.com:25\n      tls: ssl # <-\n      from: a@example.com\n      to: [b@example.com]\n", msg: `unknown tls mode of channel mail "ssl"`, hint: "starttls"},
	{name: "notify command as shell text", yaml: head + "secrets:\n" + gen + "  HOOK: {kind: manual}\nnotify:\n  channels:\n" + "    script:\n      type: command\n      command: ./notify.sh --all # <-\n", msg: "command of channel script must be a list", hint: "without a shell"},
	{name: "notify command with secret", yaml: head + "secrets:\n" + gen + "  HOOK: {kind: manual}\nnotify:\n  channels:\n" + "    script:\n      type: command\n      command: [./notify, \"{{ HOOK }}\"] # <-\n", msg: "commands cannot reference secrets", hint: "never puts a secret"},
	{name: "notify bad timeout", yaml: head + "secrets:\n" + gen + "  HOOK: {kind: manual}\nnotify:\n  channels:\n" + "    script:\n      type: command\n      command: [./notify]\n      timeout: soon # <-\n", msg: "timeout of channel script: bad duration", hint: "use 90d"},
	{name: "notify unknown key in channel", yaml: head + "secrets:\n" + gen + "  HOOK: {kind: manual}\nnotify:\n  channels:\n" + "    ops:\n      type: webhook\n      url: https://x.example\n      secret: HOOK\n      secrets: HOOK # <-\n", msg: `unknown key "secrets" in channel ops`, hint: "did you mean secret?"},
	{name: "notify contact names unknown channel", yaml: head + "secrets:\n" + gen + "  HOOK: {kind: manual}\nnotify:\n  channels:\n" + "    ops: {type: command, command: [./n]}\n  contacts:\n    security: [opz] # <-\n", msg: `contact "security": "opz" is not a channel of notify`, hint: "did you mean ops?"},
	{name: "notify unknown event", yaml: head + "secrets:\n" + gen + "  HOOK: {kind: manual}\nnotify:\n  channels:\n" + "    ops: {type: command, command: [./n]}\n  events:\n    incident.open: [ops] # <-\n", msg: `unknown event "incident.open"`, hint: "did you mean incident.opened?"},
	{name: "notify route names unknown", yaml: head + "secrets:\n" + gen + "  HOOK: {kind: manual}\nnotify:\n  channels:\n" + "    ops: {type: command, command: [./n]}\n  events:\n    overdue: [oncall] # <-\n", msg: `"oncall" is not a channel or contact of notify`, hint: "channels and contacts: ops"},
	{name: "notify unknown key", yaml: head + "secrets:\n" + gen + "notify:\n  channel: {} # <-\n", msg: `unknown key "channel" in notify`, hint: "did you mean channels?"},
	{name: "notify channels empty", yaml: head + "secrets:\n" + gen + "notify:\n  channels: {} # <-\n", msg: "channels of notify is empty", hint: "add one"},
}

// markedLine returns the line holding "# <-".
func markedLine(t *testing.T, text string) int {
	t.Helper()
	for i, l := range strings.Split(text, "\n") {
		if strings.Contains(l, "# <-") {
			return i + 1
		}
	}
	t.Fatalf("no # <- marker in:\n%s", text)
	return 0
}

func TestErrors(t *testing.T) {
	for _, tc := range errorCases {
		t.Run(tc.name, func(t *testing.T) {
			line := tc.line
			if line == 0 {
				line = markedLine(t, tc.yaml)
			}
			c, err := Parse("rekey.yaml", []byte(tc.yaml))
			if err == nil {
				t.Fatalf("Parse succeeded (%+v); want an error at line %d\n%s", c, line, tc.yaml)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Parse error %T %v is not an *Error", err, err)
			}
			prefix := "rekey.yaml:" + strconv.Itoa(line) + ":"
			if !strings.HasPrefix(err.Error(), prefix) {
				t.Errorf("error %q does not start with %q\n%s", err, prefix, numbered(tc.yaml))
			}
			if !strings.Contains(e.Msg, tc.msg) {
				t.Errorf("Msg %q does not contain %q", e.Msg, tc.msg)
			}
			if !strings.Contains(e.Hint, tc.hint) {
				t.Errorf("Hint %q does not contain %q", e.Hint, tc.hint)
			}
			if rekey.ErrorCode(err) != rekey.CodeInvalid {
				t.Errorf("code = %v, want CodeInvalid", rekey.ErrorCode(err))
			}
			if rekey.ErrorHint(err) != e.Hint {
				t.Errorf("rekey.ErrorHint = %q, want %q", rekey.ErrorHint(err), e.Hint)
			}
		})
	}
}

func numbered(s string) string {
	var b strings.Builder
	for i, l := range strings.Split(s, "\n") {
		b.WriteString(strconv.Itoa(i+1) + "\t" + l + "\n")
	}
	return b.String()
}

func TestErrorFormat(t *testing.T) {
	_, err := Parse("rekey.yaml", []byte(head+"secrets:\n"+gen+"    rotate_evry: 90d\n"))
	want := `rekey.yaml:10:5: unknown key "rotate_evry" in secret JWT_SECRET`
	if err == nil || err.Error() != want {
		t.Errorf("error = %v, want %s", err, want)
	}
	for _, tc := range []struct {
		e    Error
		want string
	}{
		{Error{File: "a/rekey.yaml", Line: 3, Msg: "m"}, "a/rekey.yaml:3: m"},
		{Error{File: "rekey.yaml", Msg: "m"}, "rekey.yaml: m"},
		{Error{Msg: "m"}, "m"},
		{Error{Line: 2, Col: 4, Msg: "m"}, "rekey.yaml:2:4: m"},
	} {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
	}
}

// TestErrorsHideValues checks that messages do not quote values that might
// be secrets pasted by mistake: templates, free text, master keys.
func TestErrorsHideValues(t *testing.T) {
	const secret = "c2VjcmV0LXZhbHVlLXRoYXQtbXVzdC1uZXZlci1wcmludA=="
	for _, text := range []string{
		"version: 1\nstore:\n  master_key: " + secret + "\n" + head[11:] + "secrets:\n" + gen,
		head + "secrets:\n" + gen + "derived:\n  URL: \"" + secret + "{{ X\"\n",
		head + "secrets:\n" + gen + "derived:\n  URL: \"" + secret + "{{ X | nofilter }}\"\n",
		head + "secrets:\n  K:\n    kind: " + secret + "\n",
		head + "secrets:\n" + gen + "    rotate_every: " + secret + "\n",
		head + "secrets:\n" + gen + "    rotate_every: c2VjcmV0\n",
		head + "secrets:\n" + gen + "    " + secret + ": 1\n",
		head + "secrets:\n  " + secret + ":\n    kind: manual\n",
		head + "secrets:\n" + gen + "    generator: {encoding: " + secret + "}\n",
		head + "secrets:\n" + gen + "derived:\n  URL: x{{ " + strings.Repeat("A", 80) + " }}\n",
	} {
		_, err := Parse("rekey.yaml", []byte(text))
		if err == nil {
			t.Errorf("Parse succeeded on\n%s", text)
			continue
		}
		all := err.Error() + " " + rekey.ErrorHint(err)
		if strings.Contains(all, "c2VjcmV0") || strings.Contains(all, "AAAAAAAAAA") {
			t.Errorf("error shows the value: %s", all)
		}
	}
}
