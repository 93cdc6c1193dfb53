package seal_test

import (
	"bytes"
	"encoding/base64"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/argon2"

	"github.com/rekeyhq/rekey/seal"
)

// fastParams are cheap argon2id params for tests (64 KiB, one pass).
func fastParams(salt string) seal.KDFParams {
	return seal.KDFParams{Time: 1, MemoryKiB: 64, Threads: 1, Salt: []byte(salt)}
}

func TestNewKDFParams(t *testing.T) {
	p, err := seal.NewKDFParams()
	if err != nil {
		t.Fatal(err)
	}
	if p.Time != 3 || p.MemoryKiB != 64*1024 || p.Threads != 2 || len(p.Salt) != 16 {
		t.Fatalf("NewKDFParams = t=%d m=%d p=%d salt=%d bytes, want 3, 65536, 2, 16", p.Time, p.MemoryKiB, p.Threads, len(p.Salt))
	}
	q, err := seal.NewKDFParams()
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(p.Salt, q.Salt) {
		t.Fatal("two NewKDFParams share a salt")
	}
	if !regexp.MustCompile(`^argon2id\$v=19\$m=65536,t=3,p=2\$[A-Za-z0-9+/]{22}$`).MatchString(p.String()) {
		t.Fatalf("String() = %q", p)
	}
}

func TestKDFParamsString(t *testing.T) {
	p := seal.KDFParams{Time: 3, MemoryKiB: 65536, Threads: 2, Salt: []byte("somesaltsomesalt")}
	want := "argon2id$v=19$m=65536,t=3,p=2$" + base64.RawStdEncoding.EncodeToString(p.Salt)
	if got := p.String(); got != want {
		t.Fatalf("String() = %q, want %q", got, want)
	}
}

func TestKDFParamsRoundTrip(t *testing.T) {
	def, err := seal.NewKDFParams()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []seal.KDFParams{
		def,
		fastParams("12345678"),
		{Time: seal.MaxKDFTime, MemoryKiB: seal.MaxKDFMemoryKiB, Threads: seal.MaxKDFThreads, Salt: bytes.Repeat([]byte{0xff}, 64)},
		{Time: 1, MemoryKiB: 8 * 4, Threads: 4, Salt: []byte("0123456789abcdef\x00")},
	} {
		got, err := seal.ParseKDFParams(p.String())
		if err != nil {
			t.Fatalf("ParseKDFParams(%q): %v", p, err)
		}
		if diff := cmp.Diff(p, got); diff != "" {
			t.Fatalf("round trip of %q (-want +got):\n%s", p, diff)
		}
	}
}

func TestParseKDFParamsRejects(t *testing.T) {
	salt := base64.RawStdEncoding.EncodeToString([]byte("somesaltsomesalt"))
	for _, s := range []string{
		"",
		"argon2id",
		"argon2i$v=19$m=65536,t=3,p=2$" + salt,
		"argon2d$v=19$m=65536,t=3,p=2$" + salt,
		"argon2id$v=16$m=65536,t=3,p=2$" + salt,
		"argon2id$m=65536,t=3,p=2$" + salt,
		"argon2id$v=19$m=65536,t=3,p=2",
		"argon2id$v=19$m=65536,t=3,p=2$",
		"argon2id$v=19$m=65536,t=3$" + salt,
		"argon2id$v=19$t=3,m=65536,p=2$" + salt,
		"argon2id$v=19$m=65536,t=3,p=2,x=1$" + salt,
		"argon2id$v=19$m=065536,t=3,p=2$" + salt,
		"argon2id$v=19$m=65536,t=+3,p=2$" + salt,
		"argon2id$v=19$m=65536,t=-3,p=2$" + salt,
		"argon2id$v=19$m=65536,t=3,p= 2$" + salt,
		"argon2id$v=19$m=65536,t=0,p=2$" + salt,
		"argon2id$v=19$m=65536,t=257,p=2$" + salt,
		"argon2id$v=19$m=65536,t=3,p=0$" + salt,
		"argon2id$v=19$m=65536,t=3,p=256$" + salt,
		"argon2id$v=19$m=15,t=3,p=2$" + salt,
		"argon2id$v=19$m=4194305,t=3,p=2$" + salt,
		"argon2id$v=19$m=4294967296,t=3,p=2$" + salt,
		"argon2id$v=19$m=65536,t=3,p=2$" + salt + "==",
		"argon2id$v=19$m=65536,t=3,p=2$" + salt + "$extra",
		// A tampered store must not make every command allocate gigabytes.
		"argon2id$v=19$m=262145,t=3,p=2$" + salt,
		"argon2id$v=19$m=65536,t=13,p=2$" + salt,
		"argon2id$v=19$m=65536,t=3,p=9$" + salt,
		"argon2id$v=19$m=65536,t=3,p=2$not*base64",
		"argon2id$v=19$m=65536,t=3,p=2$" + base64.RawStdEncoding.EncodeToString([]byte("short")),
		"argon2id$v=19$m=65536,t=3,p=2$" + base64.RawStdEncoding.EncodeToString(make([]byte, 65)),
		"argon2id$v=19$m=65536,t=3,p=2$" + salt[:10] + "\n" + salt[10:],
		" argon2id$v=19$m=65536,t=3,p=2$" + salt,
		"argon2id$v=19$m=65536,t=3,p=2$" + salt + "\n",
	} {
		if p, err := seal.ParseKDFParams(s); err == nil {
			t.Errorf("ParseKDFParams(%q) = %q, want error", s, p)
		} else if !strings.HasPrefix(err.Error(), "seal: ") {
			t.Errorf("ParseKDFParams(%q) error %q lacks the seal: prefix", s, err)
		}
	}
}

func TestKeyFromPassphrase(t *testing.T) {
	pass := []byte("tr0ub4dor&3")
	p := fastParams("saltsaltsaltsalt")
	k := seal.KeyFromPassphrase(pass, p)
	if k.IsZero() {
		t.Fatal("KeyFromPassphrase returned the zero Key")
	}
	if !k.Equal(seal.KeyFromPassphrase(bytes.Clone(pass), p)) {
		t.Fatal("same passphrase and params gave different keys")
	}
	parsed, err := seal.ParseKDFParams(p.String())
	if err != nil {
		t.Fatal(err)
	}
	if !k.Equal(seal.KeyFromPassphrase(pass, parsed)) {
		t.Fatal("params that went through String/Parse gave a different key")
	}
	want := argon2.IDKey(pass, p.Salt, 1, 64, 1, 32)
	if !bytes.Equal(keyBytes(t, k), want) {
		t.Fatal("KeyFromPassphrase is not argon2id(pass, salt, t, m, p, 32)")
	}
	for name, other := range map[string]seal.Key{
		"other passphrase": seal.KeyFromPassphrase([]byte("tr0ub4dor&4"), p),
		"other salt":       seal.KeyFromPassphrase(pass, fastParams("saltsaltsaltsalT")),
		"other time":       seal.KeyFromPassphrase(pass, seal.KDFParams{Time: 2, MemoryKiB: 64, Threads: 1, Salt: p.Salt}),
		"other memory":     seal.KeyFromPassphrase(pass, seal.KDFParams{Time: 1, MemoryKiB: 128, Threads: 1, Salt: p.Salt}),
		"other threads":    seal.KeyFromPassphrase(pass, seal.KDFParams{Time: 1, MemoryKiB: 64, Threads: 2, Salt: p.Salt}),
	} {
		if k.Equal(other) {
			t.Errorf("%s gave the same key", name)
		}
	}
}

func TestKeyFromPassphraseInvalidParamsPanics(t *testing.T) {
	pass := []byte("my very secret passphrase")
	for name, p := range map[string]seal.KDFParams{
		"zero params": {},
		"no salt":     {Time: 1, MemoryKiB: 64, Threads: 1},
		"zero time":   {Time: 0, MemoryKiB: 64, Threads: 1, Salt: []byte("saltsalt")},
		"no threads":  {Time: 1, MemoryKiB: 64, Threads: 0, Salt: []byte("saltsalt")},
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				r := recover()
				if r == nil {
					t.Fatal("no panic")
				}
				if msg, _ := r.(string); strings.Contains(msg, string(pass)) || !strings.HasPrefix(msg, "seal: ") {
					t.Fatalf("panic message %q", msg)
				}
			}()
			seal.KeyFromPassphrase(pass, p)
		})
	}
}
