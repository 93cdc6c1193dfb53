package rekey

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"math"
	"math/big"
	"strings"
	"time"
)

// Kind says how a secret is rotated.
type Kind string

// The secret kinds.
const (
	// KindGenerated is a random value rekey generates (JWT_SECRET).
	KindGenerated Kind = "generated"
	// KindPostgresPassword is a PostgreSQL role password (DATABASE_PASSWORD).
	KindPostgresPassword Kind = "postgres-password"
	// KindDataKey is a data-encryption key: rotating it requires re-encryption (ENCRYPTION_KEY).
	KindDataKey Kind = "data-key"
	// KindManual is a user-managed key (third-party API keys): rekey reminds, `rekey set` records.
	KindManual Kind = "manual"
)

// Kinds lists the valid kinds, for help and error messages.
var Kinds = []Kind{KindGenerated, KindPostgresPassword, KindDataKey, KindManual}

// Valid reports whether k is a known kind.
func (k Kind) Valid() bool {
	for _, v := range Kinds {
		if k == v {
			return true
		}
	}
	return false
}

// Rotatable reports whether rekey generates new values for the kind itself.
func (k Kind) Rotatable() bool { return k != KindManual }

// Encoding is how generated random bytes are written as text.
type Encoding string

// The generator encodings.
const (
	EncBase64         Encoding = "base64"          // standard, padded (openssl rand -base64)
	EncBase64URL      Encoding = "base64url"       // URL-safe, padded
	EncBase64URLNoPad Encoding = "base64url-nopad" // URL-safe, unpadded
	EncHex            Encoding = "hex"             // lower-case hex
	EncAlphanumeric   Encoding = "alphanumeric"    // [A-Za-z0-9], as many characters as carry Bytes*8 bits
)

// Encodings lists the valid encodings.
var Encodings = []Encoding{EncBase64, EncBase64URL, EncBase64URLNoPad, EncHex, EncAlphanumeric}

// Valid reports whether e is a known encoding.
func (e Encoding) Valid() bool {
	for _, v := range Encodings {
		if e == v {
			return true
		}
	}
	return false
}

// Generator describes a random value: Bytes of entropy written in Encoding.
type Generator struct {
	Bytes    int
	Encoding Encoding
}

// Bits is the entropy of a generated value.
func (g Generator) Bits() int { return g.Bytes * 8 }

const alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// Generate draws a new value from r (crypto/rand.Reader when r is nil).
func (g Generator) Generate(r io.Reader) (Value, error) {
	if r == nil {
		r = rand.Reader
	}
	if g.Bytes <= 0 {
		return Value{}, Errorf(CodeInvalid, "generator needs bytes > 0")
	}
	if g.Encoding == EncAlphanumeric {
		n := int(math.Ceil(float64(g.Bits()) / math.Log2(float64(len(alnum)))))
		out := make([]byte, n)
		max := big.NewInt(int64(len(alnum)))
		for i := range out {
			x, err := rand.Int(r, max)
			if err != nil {
				return Value{}, fmt.Errorf("read random: %w", err)
			}
			out[i] = alnum[x.Int64()]
		}
		return Value{b: out}, nil
	}
	raw := make([]byte, g.Bytes)
	defer func() {
		for i := range raw {
			raw[i] = 0
		}
	}()
	if _, err := io.ReadFull(r, raw); err != nil {
		return Value{}, fmt.Errorf("read random: %w", err)
	}
	var s string
	switch g.Encoding {
	case EncBase64, "":
		s = base64.StdEncoding.EncodeToString(raw)
	case EncBase64URL:
		s = base64.URLEncoding.EncodeToString(raw)
	case EncBase64URLNoPad:
		s = base64.RawURLEncoding.EncodeToString(raw)
	case EncHex:
		s = hex.EncodeToString(raw)
	default:
		return Value{}, Errorf(CodeInvalid, "unknown encoding %q", g.Encoding)
	}
	return Value{b: []byte(s)}, nil
}

// EstimateBits estimates the strength of an existing value in bits: decoded
// length for values in a recognised encoding of random bytes, else a
// character-class estimate. It is a heuristic for `rekey status` (weak) and
// the report; it never prints the value.
func EstimateBits(v Value, enc Encoding) int {
	s := strings.TrimSpace(v.RevealString())
	if s == "" {
		return 0
	}
	switch enc {
	case EncBase64, EncBase64URL, EncBase64URLNoPad:
		for _, e := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
			if b, err := e.DecodeString(s); err == nil {
				return len(b) * 8
			}
		}
	case EncHex:
		if b, err := hex.DecodeString(s); err == nil {
			return len(b) * 8
		}
	}
	// Character-class estimate: length × log2(alphabet size), capped by distinct symbols.
	var lower, upper, digit, other bool
	seen := map[rune]bool{}
	for _, c := range s {
		seen[c] = true
		switch {
		case c >= 'a' && c <= 'z':
			lower = true
		case c >= 'A' && c <= 'Z':
			upper = true
		case c >= '0' && c <= '9':
			digit = true
		default:
			other = true
		}
	}
	alpha := 0
	if lower {
		alpha += 26
	}
	if upper {
		alpha += 26
	}
	if digit {
		alpha += 10
	}
	if other {
		alpha += 32
	}
	bits := float64(len(s)) * math.Log2(float64(alpha))
	// Repetitive values are weak whatever their alphabet.
	if d := float64(len(seen)); d < float64(len(s))/2 {
		bits = float64(len(s)) * math.Log2(math.Max(d, 2))
	}
	return int(bits)
}

// MinBits is the strength below which a secret of a kind is reported weak.
func MinBits(k Kind) int {
	switch k {
	case KindDataKey:
		return 256
	case KindGenerated:
		return 256
	case KindPostgresPassword:
		return 128
	default:
		return 0
	}
}

// Spec is one managed secret as rekey.yaml declares it.
type Spec struct {
	Name       string
	Kind       Kind
	Purpose    string
	Generator  Generator      // zero for manual secrets
	Period     time.Duration  // rotation period; for manual secrets the reminder period; 0 = none
	Storage    string         // where it lives, for the inventory table (".env")
	Encryption string         // encryption at rest, for the inventory table
	Access     string         // who may read it (the runbook's Access column)
	Targets    []string       // names of the environment's targets it is published to; empty = all
	Postgres   *PostgresSpec  // for KindPostgresPassword
	Sessions   *SessionsSpec  // for a signing secret (JWT_SECRET): what happens to sessions
	Reencrypt  *ReencryptSpec // for KindDataKey: the columns it encrypts
	Line       int            // line in rekey.yaml, for messages
}

// Session modes of a signing secret.
const (
	SessionsImmediate = "immediate" // every session signed with the old value is invalid at once
	SessionsGraceful  = "graceful"  // the old value stays published as NAME_PREVIOUS for Grace
)

// SessionsSpec says what a rotation of a signing secret does to the sessions
// (tokens) signed with the old value.
type SessionsSpec struct {
	Mode string // SessionsImmediate (default) or SessionsGraceful
	// Grace is how long the old value stays published (graceful); no shorter
	// than the longest token lifetime.
	Grace time.Duration
	// PreviousKey is the key the old value is published under (NAME_PREVIOUS).
	PreviousKey string
	// OnRotate hooks run after the new value is published and services restarted.
	OnRotate []Hook
}

// Hook is an action run after a rotation: an SQL statement on a database
// whose URL is a managed secret or derived value, or a command.
type Hook struct {
	SQL      string
	Database string   // name of the secret or derived value holding the connection URL
	Command  []string // argv; never holds a value
	Timeout  time.Duration
	Line     int
}

// Re-encryption modes of a data key.
const (
	ReencryptOnline      = "online"      // publish new + NAME_PREVIOUS, re-encrypt while the app runs
	ReencryptMaintenance = "maintenance" // stop the consumers, re-encrypt, publish, start them
)

// ReencryptSpec says where the data encrypted under a data key lives and how.
type ReencryptSpec struct {
	Database      string   // name of the secret or derived value holding the connection URL
	Codec         string   // aes-256-gcm | chacha20-poly1305 | fernet | command
	Encoding      string   // base64 | base64url | hex | bytea
	Columns       []string // table.column or table(pk,...).column
	Command       []string // the command codec's program
	KeyID         bool     // write a key-id header on new ciphertexts
	BatchSize     int
	RowsPerSecond int
	Mode          string // ReencryptOnline (default) or ReencryptMaintenance
	PreviousKey   string // online: the key the old value is published under (NAME_PREVIOUS)
	// Pace is PaceAdaptive (the default online) or PaceFull (always in
	// maintenance mode): see internal/reencrypt/pace.go.
	Pace string
	// Probe is the adaptive pace's probe query ("": a primary-key point
	// read on the table being moved).
	Probe string
	// TargetP99 is the probe p99 the adaptive pace keeps under (0:
	// TargetFactor times the p99 measured before the run).
	TargetP99    time.Duration
	TargetFactor float64 // 0: 2
	// CheckpointSchema is the schema of the checkpoint table ("": the
	// first schema of the search_path, normally public).
	CheckpointSchema string
	// ReplicaLagCeiling is the replay lag of a streaming replica above
	// which the run holds its next batch (0: 5s); Replicas name secrets
	// holding replica URLs whose lag is read there too.
	ReplicaLagCeiling time.Duration
	Replicas          []string
}

// Paces of an online re-encryption.
const (
	PaceAdaptive = "adaptive" // batch rate follows the probe's latency, lock waits, active connections
	PaceFull     = "full"     // as fast as rows_per_second allows
)

// PreviousKey is the key under which s's superseded value is published while
// it is still needed (graceful sessions, online re-encryption), or "".
func (s *Spec) PreviousKey() string {
	switch {
	case s.Sessions != nil && s.Sessions.Mode == SessionsGraceful:
		return orDefault(s.Sessions.PreviousKey, s.Name+"_PREVIOUS")
	case s.Kind == KindDataKey && s.Reencrypt != nil && s.Reencrypt.Mode != ReencryptMaintenance:
		return orDefault(s.Reencrypt.PreviousKey, s.Name+"_PREVIOUS")
	}
	return ""
}

// Grace is how long s's superseded value keeps working after a rotation
// (0: not at all, or until re-encryption ends for a data key).
func (s *Spec) Grace() time.Duration {
	switch {
	case s.Sessions != nil && s.Sessions.Mode == SessionsGraceful:
		return s.Sessions.Grace
	case s.Postgres != nil && s.Postgres.Strategy == "alternating":
		return s.Postgres.Grace
	}
	return 0
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// PostgresSpec says which role a postgres-password secret belongs to and how
// its password is changed.
type PostgresSpec struct {
	// URLFrom names the derived value (usually DATABASE_URL) whose host, port,
	// database, user and sslmode are used when the fields below are empty.
	URLFrom  string
	Host     string
	Port     int
	Database string
	Role     string
	SSLMode  string
	// ChangedBy is "self" (the role changes its own password, logging in with
	// the current one) or "admin" (an admin connection from AdminSecret).
	ChangedBy string
	// AdminSecret names a managed secret holding the admin connection URL.
	AdminSecret string
	// Strategy is "single" (default) or "alternating".
	Strategy string
	// Roles are the two login roles of the alternating strategy.
	Roles []string
	// Grace is how long the idle role's password stays valid (alternating).
	Grace time.Duration
}

// Derived is a value computed from secrets and published with them, such as
// a DATABASE_URL that embeds DATABASE_PASSWORD.
type Derived struct {
	Name     string
	Template *Template
	Line     int
}

// Day is 24 hours, the unit of rotation periods.
const Day = 24 * time.Hour
