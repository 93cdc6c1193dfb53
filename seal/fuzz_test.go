package seal_test

import (
	"bytes"
	"testing"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/rekeyhq/rekey/seal"
)

type sealedMsg struct {
	sealed, ad, plaintext []byte
}

// genuineMessages builds sealed messages deterministically (fixed key, fixed
// nonces, the documented format) so that every fuzzing process, coordinator
// and workers alike, agrees on which inputs are genuine.
func genuineMessages(t testing.TB) []sealedMsg {
	aead, err := chacha20poly1305.NewX(fixedKey(t).Derive("rekey seal v1"))
	if err != nil {
		t.Fatal(err)
	}
	var msgs []sealedMsg
	for i, c := range []struct{ pt, ad []byte }{
		{testPlaintext, testAD},
		{nil, nil},
		{[]byte("x"), seal.AD("staging", "API_TOKEN", "1")},
		{bytes.Repeat([]byte{0}, 64), seal.AD()},
	} {
		nonce := bytes.Repeat([]byte{byte(i + 1)}, 24)
		sealed := append([]byte{0x01}, nonce...)
		sealed = aead.Seal(sealed, nonce, c.pt, c.ad)
		msgs = append(msgs, sealedMsg{sealed, c.ad, c.pt})
	}
	return msgs
}

// FuzzOpen checks that Open never panics, fails only with ErrOpen, and
// succeeds only for the genuinely sealed seeds (a fuzzer cannot forge a tag).
// It also checks Seal/Open round-trip arbitrary input.
func FuzzOpen(f *testing.F) {
	s := seal.NewSealer(fixedKey(f))
	genuine := genuineMessages(f)
	for _, m := range genuine {
		f.Add(m.sealed, m.ad)
		f.Add(m.sealed[:len(m.sealed)-1], m.ad)
		f.Add(m.sealed, append(bytes.Clone(m.ad), 0))
		f.Add(append([]byte{0x02}, m.sealed[1:]...), m.ad)
	}
	f.Add([]byte{}, []byte{})
	f.Add([]byte{0x01}, []byte(nil))
	f.Add(make([]byte, seal.Overhead), []byte("rekey-ad-v1"))

	f.Fuzz(func(t *testing.T, sealed, ad []byte) {
		sealedCopy, adCopy := bytes.Clone(sealed), bytes.Clone(ad)
		pt, err := s.Open(sealed, ad)
		if !bytes.Equal(sealed, sealedCopy) || !bytes.Equal(ad, adCopy) {
			t.Fatal("Open modified its arguments")
		}

		var want *sealedMsg
		for i := range genuine {
			if bytes.Equal(sealed, genuine[i].sealed) && bytes.Equal(ad, genuine[i].ad) {
				want = &genuine[i]
			}
		}
		switch {
		case err != nil && err != seal.ErrOpen:
			t.Fatalf("Open error %v is not ErrOpen", err)
		case err != nil && pt != nil:
			t.Fatal("Open returned plaintext with its error")
		case err != nil && want != nil:
			t.Fatal("Open rejected a genuinely sealed message")
		case err == nil && want == nil:
			t.Fatalf("Open accepted a forged message (%d bytes)", len(sealed))
		case err == nil && !bytes.Equal(pt, want.plaintext):
			t.Fatal("Open returned the wrong plaintext")
		}

		// Any bytes survive a round trip under any ad.
		back, err := s.Open(s.Seal(sealed, ad), ad)
		if err != nil || !bytes.Equal(back, sealed) {
			t.Fatalf("round trip failed: %v", err)
		}
	})
}
