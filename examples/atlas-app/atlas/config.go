// Package atlas is the reference application rekey's end-to-end tests
// drive: a small patient-records backend shaped like the runbook's Rust
// service. It reads its secrets from a .env once at start, signs HS512
// JWTs with JWT_SECRET (accepting JWT_SECRET_PREVIOUS too), and keeps PII
// encrypted with AES-256-GCM under ENCRYPTION_KEY (reading rows written
// under ENCRYPTION_KEY_PREVIOUS too).
//
// Secret hygiene: no error, log line or response body produced by this
// package contains a secret value or a ciphertext; only a patient's own
// decrypted PII is ever returned, to an authenticated caller.
package atlas

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"os"

	"github.com/rekeyhq/rekey/dotenv"
	"github.com/rekeyhq/rekey/internal/postgres"
)

// Names of the .env keys the application reads.
const (
	KeyDatabaseURL           = "DATABASE_URL"
	KeyJWTSecret             = "JWT_SECRET"
	KeyJWTSecretPrevious     = "JWT_SECRET_PREVIOUS"
	KeyEncryptionKey         = "ENCRYPTION_KEY"
	KeyEncryptionKeyPrevious = "ENCRYPTION_KEY_PREVIOUS"
)

// MinJWTSecretBytes is the shortest JWT_SECRET the app accepts: an HS512
// key must be no shorter than the hash output (RFC 7518, section 3.2).
// `openssl rand -base64 64`, the runbook's command, prints 88 characters.
const MinJWTSecretBytes = 64

// DemoPasswordEnv names the process environment variable that overrides
// the demo account's password (DefaultDemoPassword).
const DemoPasswordEnv = "ATLAS_DEMO_PASSWORD"

// Demo account.
const (
	DemoUser            = "demo"
	DefaultDemoPassword = "demo-password"
)

// Config is what the application reads at start. Its String method and
// fmt verbs never show a secret.
type Config struct {
	DB postgres.Params // from DATABASE_URL

	JWTSecret         []byte // JWT_SECRET, the bytes of the value as written
	JWTSecretPrevious []byte // JWT_SECRET_PREVIOUS; nil when unset or empty

	EncryptionKey         []byte // ENCRYPTION_KEY, base64-decoded, 32 bytes
	EncryptionKeyPrevious []byte // ENCRYPTION_KEY_PREVIOUS; nil when unset or empty

	DemoPassword string
}

// String describes c without any secret.
func (c *Config) String() string {
	return fmt.Sprintf("atlas.Config{DB: %s, JWT_SECRET_PREVIOUS set: %t, ENCRYPTION_KEY_PREVIOUS set: %t}",
		c.DB.String(), c.JWTSecretPrevious != nil, c.EncryptionKeyPrevious != nil)
}

// Format makes every fmt verb print String.
func (c *Config) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(c.String())) }

// LoadEnvFile reads the .env at path (with the dotenv package) and
// returns the configuration. The demo password comes from the process
// environment (DemoPasswordEnv). Errors name keys, never values.
func LoadEnvFile(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("atlas: read env file: %w", err)
	}
	f, err := dotenv.Parse(path, data)
	if err != nil {
		return nil, fmt.Errorf("atlas: %w", err)
	}
	return FromEnv(f.Get, os.Getenv(DemoPasswordEnv))
}

// FromEnv builds a Config from get (dotenv.File.Get, or a map lookup in
// tests) and the demo password ("" means DefaultDemoPassword).
func FromEnv(get func(string) (string, bool), demoPassword string) (*Config, error) {
	c := &Config{DemoPassword: demoPassword}
	if c.DemoPassword == "" {
		c.DemoPassword = DefaultDemoPassword
	}
	var errs []error
	required := func(key string) string {
		v, ok := get(key)
		if !ok || v == "" {
			errs = append(errs, fmt.Errorf("atlas: %s is not set", key))
		}
		return v
	}
	optional := func(key string) (string, bool) {
		v, ok := get(key)
		return v, ok && v != ""
	}

	if u := required(KeyDatabaseURL); u != "" {
		p, err := postgres.ParseURL(u)
		if err != nil {
			// ParseURL's errors never quote the URL.
			errs = append(errs, fmt.Errorf("atlas: %s: %w", KeyDatabaseURL, err))
		} else {
			if p.Options == nil {
				p.Options = url.Values{}
			}
			if p.Options.Get("application_name") == "" {
				p.Options.Set("application_name", "atlas-app")
			}
			c.DB = p
		}
	}
	if s := required(KeyJWTSecret); s != "" {
		if len(s) < MinJWTSecretBytes {
			errs = append(errs, fmt.Errorf("atlas: %s must be at least %d bytes for HS512 (RFC 7518 section 3.2), got %d", KeyJWTSecret, MinJWTSecretBytes, len(s)))
		}
		c.JWTSecret = []byte(s)
	}
	if s, ok := optional(KeyJWTSecretPrevious); ok {
		c.JWTSecretPrevious = []byte(s)
	}
	if s := required(KeyEncryptionKey); s != "" {
		k, err := decodeKey(KeyEncryptionKey, s)
		if err != nil {
			errs = append(errs, err)
		}
		c.EncryptionKey = k
	}
	if s, ok := optional(KeyEncryptionKeyPrevious); ok {
		k, err := decodeKey(KeyEncryptionKeyPrevious, s)
		if err != nil {
			errs = append(errs, err)
		}
		c.EncryptionKeyPrevious = k
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return c, nil
}

// decodeKey decodes a base64 (standard alphabet, padded or not) AES-256
// key. The error names the key, never the value.
func decodeKey(name, s string) ([]byte, error) {
	k, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		k, err = base64.RawStdEncoding.DecodeString(s)
	}
	if err != nil {
		return nil, fmt.Errorf("atlas: %s is not valid base64", name)
	}
	if len(k) != KeySize {
		return nil, fmt.Errorf("atlas: %s must decode to %d bytes, got %d", name, KeySize, len(k))
	}
	return k, nil
}
