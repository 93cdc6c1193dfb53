package main

import (
	"testing"
	"time"

	"github.com/rekeyhq/rekey/examples/atlas-app/atlas"
	"github.com/rekeyhq/rekey/internal/demo/atlasdemo"
)

// TestAtlasdemoContract: internal/demo/atlasdemo drives this app without
// linking it (the rekey binary stays free of the app and its JWT library),
// so what it assumes of the app is checked here against the app itself.
func TestAtlasdemoContract(t *testing.T) {
	if atlasdemo.ParentPIDEnv != atlas.ParentPIDEnv || atlasdemo.DemoUser != atlas.DemoUser || atlasdemo.DemoPassword != atlas.DefaultDemoPassword {
		t.Fatal("atlasdemo's constants differ from the app's")
	}
	secret, other := []byte(secretText(t)), []byte(secretText(t))
	tok, err := atlas.IssueToken(secret, atlas.DemoUser, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if !atlasdemo.SignedWith(secret, tok) {
		t.Error("SignedWith refuses a token the app signed with the secret")
	}
	if atlasdemo.SignedWith(other, tok) {
		t.Error("SignedWith accepts a token signed with another secret")
	}
	if _, err := atlas.VerifyToken([][]byte{secret}, tok); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", "a.b", tok + "x", tok[:len(tok)-4]} {
		if atlasdemo.SignedWith(secret, bad) {
			t.Errorf("SignedWith accepts %q", bad)
		}
	}
}
