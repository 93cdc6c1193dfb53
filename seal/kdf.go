package seal

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Default argon2id parameters chosen by NewKDFParams (RFC 9106's second
// recommended option: 64 MiB, 3 passes).
const (
	defaultKDFTime      = 3
	defaultKDFMemoryKiB = 64 * 1024
	defaultKDFThreads   = 2
	defaultKDFSaltLen   = 16
)

// Bounds enforced by ParseKDFParams (and KeyFromPassphrase). The parameters
// live in the store's metadata, read before the key exists to authenticate
// them, so the upper bounds keep a damaged or tampered store from making
// every command allocate absurd memory or time: at most 4× the defaults
// (256 MiB, 12 passes, 8 lanes). Weaker parameters only derive a key the
// store's key check refuses.
const (
	MinKDFSaltLen   = 8
	MaxKDFSaltLen   = 64
	MaxKDFTime      = 4 * defaultKDFTime
	MaxKDFMemoryKiB = 4 * defaultKDFMemoryKiB // 256 MiB
	MaxKDFThreads   = 8
)

// kdfPrefix is the PHC-style algorithm and version prefix of the encoded form.
var kdfPrefix = "argon2id$v=" + strconv.Itoa(argon2.Version) + "$"

// kdfSaltEncoding is unpadded standard base64, strict so the encoding is
// canonical.
var kdfSaltEncoding = base64.RawStdEncoding.Strict()

var errKDFFormat = errors.New("seal: invalid kdf params")

// KDFParams are the argon2id parameters for passphrase mode. They are not
// secret: their String form is kept in the store's plaintext metadata.
//
// Valid params have 1 <= Time <= MaxKDFTime, 1 <= Threads <= MaxKDFThreads,
// 8*Threads <= MemoryKiB <= MaxKDFMemoryKiB and a salt of MinKDFSaltLen to
// MaxKDFSaltLen bytes.
type KDFParams struct {
	Time      uint32 // passes over memory
	MemoryKiB uint32 // memory in KiB
	Threads   uint8  // lanes
	Salt      []byte // random, public
}

// NewKDFParams returns the default parameters (Time=3, MemoryKiB=65536,
// Threads=2) with a fresh 16-byte random salt. The error is non-nil only if
// the system random source fails.
func NewKDFParams() (KDFParams, error) {
	salt := make([]byte, defaultKDFSaltLen)
	if _, err := io.ReadFull(rand.Reader, salt); err != nil {
		return KDFParams{}, fmt.Errorf("seal: generate salt: %w", err)
	}
	return KDFParams{
		Time:      defaultKDFTime,
		MemoryKiB: defaultKDFMemoryKiB,
		Threads:   defaultKDFThreads,
		Salt:      salt,
	}, nil
}

// String encodes p as "argon2id$v=19$m=<MemoryKiB>,t=<Time>,p=<Threads>$<salt>"
// where the salt is unpadded standard base64, e.g.
// "argon2id$v=19$m=65536,t=3,p=2$c29tZXNhbHRzb21lc2FsdA". ParseKDFParams
// reverses it.
func (p KDFParams) String() string {
	return fmt.Sprintf("%sm=%d,t=%d,p=%d$%s", kdfPrefix,
		p.MemoryKiB, p.Time, p.Threads, kdfSaltEncoding.EncodeToString(p.Salt))
}

// ParseKDFParams decodes the String form of KDFParams. It accepts only the
// canonical encoding (no whitespace, leading zeros or alternative base64) and
// only valid params (see KDFParams); anything else is an error. Only argon2id
// version 19 is supported.
func ParseKDFParams(s string) (KDFParams, error) {
	rest, ok := strings.CutPrefix(s, kdfPrefix)
	if !ok {
		return KDFParams{}, fmt.Errorf("%w: want %s...", errKDFFormat, kdfPrefix)
	}
	costs, salt64, ok := strings.Cut(rest, "$")
	if !ok {
		return KDFParams{}, fmt.Errorf("%w: missing salt", errKDFFormat)
	}
	var p KDFParams
	fields := strings.Split(costs, ",")
	if len(fields) != 3 {
		return KDFParams{}, fmt.Errorf("%w: want m=,t=,p=", errKDFFormat)
	}
	m, err1 := kdfField(fields[0], "m=", 32)
	t, err2 := kdfField(fields[1], "t=", 32)
	th, err3 := kdfField(fields[2], "p=", 8)
	if err := errors.Join(err1, err2, err3); err != nil {
		return KDFParams{}, fmt.Errorf("%w: want m=,t=,p= with decimal values", errKDFFormat)
	}
	p.MemoryKiB, p.Time, p.Threads = uint32(m), uint32(t), uint8(th)
	p.Salt, err1 = kdfSaltEncoding.DecodeString(salt64)
	if err1 != nil {
		return KDFParams{}, fmt.Errorf("%w: salt is not base64", errKDFFormat)
	}
	if err := p.validate(); err != nil {
		return KDFParams{}, err
	}
	if p.String() != s {
		return KDFParams{}, fmt.Errorf("%w: not in canonical form", errKDFFormat)
	}
	return p, nil
}

// kdfField parses "<prefix><decimal>" into an unsigned integer of bits size.
func kdfField(f, prefix string, bits int) (uint64, error) {
	v, ok := strings.CutPrefix(f, prefix)
	if !ok {
		return 0, errKDFFormat
	}
	return strconv.ParseUint(v, 10, bits)
}

// validate checks the bounds documented on KDFParams.
func (p KDFParams) validate() error {
	switch {
	case p.Time < 1 || p.Time > MaxKDFTime:
		return fmt.Errorf("%w: t must be 1..%d", errKDFFormat, MaxKDFTime)
	case p.Threads < 1 || p.Threads > MaxKDFThreads:
		return fmt.Errorf("%w: p must be 1..%d", errKDFFormat, MaxKDFThreads)
	case p.MemoryKiB < 8*uint32(p.Threads) || p.MemoryKiB > MaxKDFMemoryKiB:
		return fmt.Errorf("%w: m must be %d..%d", errKDFFormat, 8*uint32(p.Threads), MaxKDFMemoryKiB)
	case len(p.Salt) < MinKDFSaltLen || len(p.Salt) > MaxKDFSaltLen:
		return fmt.Errorf("%w: salt must be %d..%d bytes", errKDFFormat, MinKDFSaltLen, MaxKDFSaltLen)
	}
	return nil
}

// KeyFromPassphrase derives a master key from pass with argon2id under p. The
// same pass and params always give the same key. It does not retain pass;
// the caller should Wipe it afterwards.
//
// It panics (with a message naming the bad parameter, never the passphrase)
// if p is invalid, which cannot happen for params from NewKDFParams or
// ParseKDFParams: deriving under, say, an empty salt would silently weaken the
// key.
func KeyFromPassphrase(pass []byte, p KDFParams) Key {
	if err := p.validate(); err != nil {
		panic(err.Error())
	}
	out := argon2.IDKey(pass, p.Salt, p.Time, p.MemoryKiB, p.Threads, KeySize)
	defer Wipe(out)
	b := new([KeySize]byte)
	copy(b[:], out)
	return Key{m: hide(b)}
}
