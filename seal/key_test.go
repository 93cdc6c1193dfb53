package seal_test

import (
	"bytes"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"testing"

	"github.com/rekeyhq/rekey/seal"
)

func TestGenerateKey(t *testing.T) {
	a, b := newKey(t), newKey(t)
	if a.IsZero() || b.IsZero() {
		t.Fatal("GenerateKey returned the zero Key")
	}
	if a.Equal(b) {
		t.Fatal("two generated keys are equal")
	}
	if got := len(keyBytes(t, a)); got != seal.KeySize {
		t.Fatalf("key has %d bytes, want %d", got, seal.KeySize)
	}
}

func TestEncodeParseRoundTrip(t *testing.T) {
	k := newKey(t)
	enc := k.Encode()
	if len(enc) != 44 || !strings.HasSuffix(enc, "=") {
		t.Fatalf("Encode() = %d chars, want 44 ending in '='", len(enc))
	}
	back, err := seal.ParseKey(enc)
	if err != nil {
		t.Fatalf("ParseKey(Encode()): %v", err)
	}
	if !back.Equal(k) {
		t.Fatal("ParseKey(Encode()) is a different key")
	}
	if back.Encode() != enc {
		t.Fatal("Encode is not stable across a round trip")
	}
}

func TestParseKey(t *testing.T) {
	valid := newKey(t).Encode()
	raw := keyBytes(t, fixedKey(t))
	// A canonical encoding whose 43rd character is replaced so the padding
	// bits are non-zero: same bytes under a lenient decoder, rejected here.
	nonCanon := []byte(fixedKeyB64)
	nonCanon[42] = '9' // canonical '8' (111100) with a padding bit set (111101)
	if lenient, err := base64.StdEncoding.DecodeString(string(nonCanon)); err != nil || !bytes.Equal(lenient, raw) {
		t.Fatal("test setup: non-canonical encoding should decode leniently to the same key")
	}

	tests := []struct {
		name  string
		in    string
		valid bool
	}{
		{"valid", valid, true},
		{"leading and trailing whitespace", " \t\n" + valid + " \r\n", true},
		{"trailing newline as in a key file", valid + "\n", true},
		{"openssl style output", fixedKeyB64 + "\n", true},
		{"empty", "", false},
		{"whitespace only", " \n\t ", false},
		{"16 bytes", base64.StdEncoding.EncodeToString(raw[:16]), false},
		{"31 bytes", base64.StdEncoding.EncodeToString(raw[:31]), false},
		{"33 bytes", base64.StdEncoding.EncodeToString(append(raw, 1)), false},
		{"64 bytes", base64.StdEncoding.EncodeToString(append(raw, raw...)), false},
		{"not base64", "this is definitely not base64 at all!!", false},
		{"unpadded", strings.TrimRight(valid, "="), false},
		{"url alphabet", base64.URLEncoding.EncodeToString(bytes.Repeat([]byte{0xfb, 0xff}, 16)), false},
		{"hex", hex.EncodeToString(raw), false},
		{"non-canonical trailing bits", string(nonCanon), false},
		{"space inside", valid[:20] + " " + valid[20:], false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := seal.ParseKey(tt.in)
			if tt.valid {
				if err != nil {
					t.Fatalf("ParseKey: %v", err)
				}
				if k.Encode() != strings.TrimSpace(tt.in) {
					t.Fatal("parsed key does not re-encode to the trimmed input")
				}
				return
			}
			if err == nil {
				t.Fatal("ParseKey accepted invalid input")
			}
			if !k.IsZero() {
				t.Error("ParseKey returned a non-zero Key with an error")
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "seal: ") {
				t.Errorf("error %q lacks the seal: prefix", msg)
			}
			if trimmed := strings.TrimSpace(tt.in); len(trimmed) >= 4 && strings.Contains(msg, trimmed[:4]) {
				t.Errorf("error %q quotes the input", msg)
			}
			if trimmed := strings.TrimSpace(tt.in); trimmed != "" && strings.Contains(msg, trimmed) {
				t.Errorf("error %q contains the input", msg)
			}
		})
	}
}

func TestParseKeyErrorsDistinguishCause(t *testing.T) {
	_, errLen := seal.ParseKey(base64.StdEncoding.EncodeToString(make([]byte, 16)))
	_, errEnc := seal.ParseKey("!!!!")
	if errLen == nil || errEnc == nil {
		t.Fatal("ParseKey accepted invalid input")
	}
	if !strings.Contains(errLen.Error(), "32 bytes") {
		t.Errorf("length error %q does not mention 32 bytes", errLen)
	}
	if !strings.Contains(errEnc.Error(), "base64") {
		t.Errorf("encoding error %q does not mention base64", errEnc)
	}
}

func TestKeyID(t *testing.T) {
	k := fixedKey(t)
	id := k.ID()
	if !regexp.MustCompile(`^mk_[0-9a-f]{16}$`).MatchString(id) {
		t.Fatalf("ID() = %q, want mk_ + 16 hex", id)
	}
	m := hmac.New(sha256.New, keyBytes(t, k))
	m.Write([]byte("rekey master key id v1"))
	if want := "mk_" + hex.EncodeToString(m.Sum(nil))[:16]; id != want {
		t.Fatalf("ID() = %q, want %q", id, want)
	}
	if k.ID() != id {
		t.Fatal("ID is not stable")
	}
	if newKey(t).ID() == id {
		t.Fatal("different keys share an ID")
	}
	assertNoLeak(t, "ID", id, keyBytes(t, k))
}

func TestKeyEqual(t *testing.T) {
	a := newKey(t)
	a2, err := seal.ParseKey(a.Encode())
	if err != nil {
		t.Fatal(err)
	}
	b := newKey(t)
	var zero seal.Key
	tests := []struct {
		name string
		x, y seal.Key
		want bool
	}{
		{"same value", a, a, true},
		{"separately parsed copy", a, a2, true},
		{"different keys", a, b, false},
		{"key vs zero", a, zero, false},
		{"zero vs key", zero, a, false},
		{"zero vs zero", zero, zero, true},
	}
	for _, tt := range tests {
		if got := tt.x.Equal(tt.y); got != tt.want {
			t.Errorf("%s: Equal = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestDerive(t *testing.T) {
	k := fixedKey(t)
	audit := k.Derive("rekey audit v1")
	if len(audit) != 32 {
		t.Fatalf("Derive returned %d bytes, want 32", len(audit))
	}
	want, err := hkdf.Key(sha256.New, keyBytes(t, k), nil, "rekey audit v1", 32)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(audit, want) {
		t.Fatal("Derive is not HKDF-SHA256(key, nil salt, info=purpose)")
	}
	if !bytes.Equal(k.Derive("rekey audit v1"), audit) {
		t.Fatal("Derive is not deterministic")
	}
	if bytes.Equal(k.Derive("rekey other v1"), audit) {
		t.Fatal("different purposes give the same subkey")
	}
	if bytes.Equal(newKey(t).Derive("rekey audit v1"), audit) {
		t.Fatal("different keys give the same subkey")
	}
	if bytes.Equal(audit, keyBytes(t, k)) {
		t.Fatal("subkey equals the master key")
	}
}

func TestZeroKey(t *testing.T) {
	var zero seal.Key
	if !zero.IsZero() {
		t.Fatal("zero Key: IsZero() = false")
	}
	if got := fmt.Sprint(zero); got != "[REDACTED]" {
		t.Errorf("zero Key prints %q", got)
	}
	for name, f := range map[string]func(){
		"Encode":    func() { zero.Encode() },
		"ID":        func() { zero.ID() },
		"Derive":    func() { zero.Derive("x") },
		"NewSealer": func() { seal.NewSealer(zero) },
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("%s on the zero Key did not panic", name)
				}
			}()
			f()
		})
	}
}

type keyHolder struct {
	Name string
	Key  seal.Key
	Ptr  *seal.Key
	List []seal.Key
}

type hiddenKeyHolder struct {
	name string
	key  seal.Key
}

func TestKeyRedaction(t *testing.T) {
	k := newKey(t)
	secret := keyBytes(t, k)

	t.Run("fmt verbs", func(t *testing.T) {
		for _, verb := range []string{"%v", "%s", "%q", "%x", "%X", "%#v", "%+v", "%d", "%08x", "%-20s", "%#x", "% x"} {
			for _, v := range []any{k, &k} {
				got := fmt.Sprintf(verb, v)
				if got != "[REDACTED]" {
					t.Errorf("Sprintf(%q, %T) = %q, want [REDACTED]", verb, v, got)
				}
			}
		}
		if got := k.String(); got != "[REDACTED]" {
			t.Errorf("String() = %q", got)
		}
		if got := k.GoString(); got != "[REDACTED]" {
			t.Errorf("GoString() = %q", got)
		}
	})

	t.Run("fmt containers", func(t *testing.T) {
		h := keyHolder{Name: "prod", Key: k, Ptr: &k, List: []seal.Key{k, k}}
		hidden := hiddenKeyHolder{name: "prod", key: k}
		for _, verb := range []string{"%v", "%s", "%q", "%x", "%X", "%#v", "%+v", "%d"} {
			for _, v := range []any{h, &h, hidden, &hidden, []seal.Key{k}, map[string]seal.Key{"k": k}, []any{k}} {
				out := fmt.Sprintf(verb, v)
				assertNoLeak(t, fmt.Sprintf("Sprintf(%q, %T)", verb, v), out, secret)
			}
		}
		if out := fmt.Sprintf("%+v", h); !strings.Contains(out, "[REDACTED]") {
			t.Errorf("struct field not redacted visibly: %q", out)
		}
		assertNoLeak(t, "error wrapping", fmt.Errorf("bad key %v: %w", k, seal.ErrOpen).Error(), secret)
	})

	t.Run("json and text", func(t *testing.T) {
		out, err := json.Marshal(keyHolder{Name: "prod", Key: k, Ptr: &k, List: []seal.Key{k}})
		if err != nil {
			t.Fatal(err)
		}
		want := `{"Name":"prod","Key":"[REDACTED]","Ptr":"[REDACTED]","List":["[REDACTED]"]}`
		if string(out) != want {
			t.Errorf("json.Marshal = %s, want %s", out, want)
		}
		out, err = json.Marshal(map[string]any{"key": k, "hidden": hiddenKeyHolder{key: k}})
		if err != nil {
			t.Fatal(err)
		}
		assertNoLeak(t, "json map", string(out), secret)
		txt, err := k.MarshalText()
		if err != nil || string(txt) != "[REDACTED]" {
			t.Errorf("MarshalText = %q, %v", txt, err)
		}
	})

	t.Run("slog", func(t *testing.T) {
		for name, mk := range map[string]func(*bytes.Buffer) slog.Handler{
			"text": func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) },
			"json": func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) },
		} {
			var buf bytes.Buffer
			log := slog.New(mk(&buf))
			log.Info("rotated", "key", k, slog.Any("ptr", &k))
			log.Info("holder", "h", keyHolder{Name: "prod", Key: k, Ptr: &k}, "hidden", hiddenKeyHolder{key: k})
			log.With("key", k).WithGroup("g").Info("grouped", "key", k, slog.Group("inner", "key", k))
			log.Info("value", slog.Any("lv", k.LogValue()))
			out := buf.String()
			assertNoLeak(t, "slog "+name, out, secret)
			if !strings.Contains(out, "[REDACTED]") {
				t.Errorf("slog %s output does not show [REDACTED]: %s", name, out)
			}
		}
	})
}

func TestWipe(t *testing.T) {
	b := []byte("hunter2 hunter2")
	seal.Wipe(b)
	if !bytes.Equal(b, make([]byte, len(b))) {
		t.Fatalf("Wipe left %q", b)
	}
	seal.Wipe(nil) // must not panic
}
