package postgres

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/xdg-go/stringprep"
)

const (
	// DefaultSCRAMIterations is the iteration count libpq and the server
	// use by default (scram_iterations = 4096).
	DefaultSCRAMIterations = 4096
	// SCRAMSaltLen is the salt length PostgreSQL uses (SCRAM_DEFAULT_SALT_LEN).
	SCRAMSaltLen = 16
)

// SCRAMVerifier computes a SCRAM-SHA-256 verifier exactly as libpq's
// PQencryptPasswordConn, psql's \password and the server itself do:
//
//	SCRAM-SHA-256$<iterations>:<base64 salt>$<base64 StoredKey>:<base64 ServerKey>
//
// with SaltedPassword = PBKDF2-HMAC-SHA256(SASLprep(password), salt,
// iterations), ClientKey = HMAC(SaltedPassword, "Client Key"), StoredKey =
// SHA256(ClientKey) and ServerKey = HMAC(SaltedPassword, "Server Key").
//
// SASLprep follows PostgreSQL's pg_saslprep: pure ASCII passes through
// untouched; anything else is mapped, NFKC-normalized and checked, and
// when that fails (invalid UTF-8, prohibited or unassigned code points,
// bidi rules, empty result) the raw bytes are used, as the server does.
// iterations < 1 means DefaultSCRAMIterations.
func SCRAMVerifier(password []byte, salt []byte, iterations int) string {
	if iterations < 1 {
		iterations = DefaultSCRAMIterations
	}
	prepped, owned := saslPrep(password)
	salted := saltedPassword(prepped, salt, iterations)
	if owned {
		clear(prepped)
	}

	clientKey := hmacSHA256(salted, []byte("Client Key"))
	storedKey := sha256.Sum256(clientKey)
	serverKey := hmacSHA256(salted, []byte("Server Key"))
	clear(salted)
	clear(clientKey)

	b64 := base64.StdEncoding.EncodeToString
	return "SCRAM-SHA-256$" + strconv.Itoa(iterations) + ":" + b64(salt) +
		"$" + b64(storedKey[:]) + ":" + b64(serverKey)
}

// NewSCRAMVerifier computes a verifier with a fresh 16-byte random salt
// and 4096 iterations, the defaults of libpq and the server.
func NewSCRAMVerifier(password []byte) (string, error) {
	salt := make([]byte, SCRAMSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("postgres: random salt: %w", err)
	}
	return SCRAMVerifier(password, salt, DefaultSCRAMIterations), nil
}

// isSCRAMVerifier reports whether v has the shape of a SCRAM-SHA-256
// verifier and only contains characters that are safe inside a SQL string
// literal (digits, base64 and the separators).
func isSCRAMVerifier(v string) bool {
	rest, ok := strings.CutPrefix(v, "SCRAM-SHA-256$")
	if !ok {
		return false
	}
	iterSalt, keys, ok := strings.Cut(rest, "$")
	if !ok {
		return false
	}
	iter, salt, ok := strings.Cut(iterSalt, ":")
	if !ok {
		return false
	}
	if n, err := strconv.Atoi(iter); err != nil || n < 1 {
		return false
	}
	stored, server, ok := strings.Cut(keys, ":")
	if !ok {
		return false
	}
	for _, part := range []string{salt, stored, server} {
		b, err := base64.StdEncoding.DecodeString(part)
		if err != nil || len(b) == 0 {
			return false
		}
	}
	s1, _ := base64.StdEncoding.DecodeString(stored)
	s2, _ := base64.StdEncoding.DecodeString(server)
	return len(s1) == sha256.Size && len(s2) == sha256.Size
}

// saltedPassword is PBKDF2-HMAC-SHA256 with a single output block, the
// Hi() function of RFC 5802.
func saltedPassword(password, salt []byte, iterations int) []byte {
	mac := hmac.New(sha256.New, password)
	mac.Write(salt)
	mac.Write([]byte{0, 0, 0, 1})
	u := mac.Sum(nil)
	result := make([]byte, len(u))
	copy(result, u)
	for i := 1; i < iterations; i++ {
		mac.Reset()
		mac.Write(u)
		u = mac.Sum(u[:0])
		for j := range result {
			result[j] ^= u[j]
		}
	}
	clear(u)
	return result
}

func hmacSHA256(key, msg []byte) []byte {
	mac := hmac.New(sha256.New, key)
	mac.Write(msg)
	return mac.Sum(nil)
}

// saslPrep mirrors PostgreSQL's pg_saslprep as used by scram_build_secret:
// it returns the prepared password (owned=true, a new slice), or the input
// itself when the input is pure ASCII or cannot be prepared.
func saslPrep(password []byte) (prepped []byte, owned bool) {
	ascii := true
	for _, b := range password {
		if b >= 0x80 {
			ascii = false
			break
		}
	}
	if ascii || !utf8.Valid(password) {
		return password, false
	}
	// U+200B ZERO WIDTH SPACE is in both RFC 3454 tables B.1 (map to
	// nothing) and C.1.2 (non-ASCII space); PostgreSQL checks C.1.2 first
	// and maps it to a space, the stringprep package to nothing.
	in := strings.ReplaceAll(string(password), "\u200b", " ")
	out, err := stringprep.SASLprep.Prepare(in)
	if err != nil || out == "" {
		return password, false
	}
	return []byte(out), true
}
