package atlasdemo

import (
	"context"
	"crypto/hmac"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The app's demo account (atlas.DemoUser, atlas.DefaultDemoPassword).
const (
	DemoUser     = "demo"
	DemoPassword = "demo-password"
)

var client = &http.Client{Timeout: 20 * time.Second}

// Login logs in as the demo user at base (http://host:port) and returns
// the token. Errors never quote it.
func Login(ctx context.Context, base string) (string, error) {
	body, _ := json.Marshal(map[string]string{"username": DemoUser, "password": DemoPassword})
	req, err := http.NewRequestWithContext(ctx, "POST", base+"/login", strings.NewReader(string(body)))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var out struct{ Token string }
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&out); err != nil || resp.StatusCode != http.StatusOK || out.Token == "" {
		return "", fmt.Errorf("POST /login: status %d, no token", resp.StatusCode)
	}
	return out.Token, nil
}

// Get reads patient id with tok: the status and the body.
func Get(ctx context.Context, base, tok string, id int) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", base+"/patients/"+strconv.Itoa(id), nil)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	return resp.StatusCode, body, err
}

// Patient is what GET /patients/{id} returns (decrypted PII).
type Patient struct {
	ID    int64   `json:"id"`
	Name  string  `json:"name"`
	Email *string `json:"email"`
	SSN   *string `json:"ssn"`
}

// Smoke logs in and reads patient id, as `atlas-app smoke` does.
func Smoke(ctx context.Context, base string, id int) (*Patient, error) {
	tok, err := Login(ctx, base)
	if err != nil {
		return nil, err
	}
	code, body, err := Get(ctx, base, tok, id)
	if err != nil {
		return nil, fmt.Errorf("GET /patients/%d: %w", id, err)
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("GET /patients/%d: status %d", id, code)
	}
	var p Patient
	if err := json.Unmarshal(body, &p); err != nil {
		return nil, fmt.Errorf("GET /patients/%d: %w", id, err)
	}
	return &p, nil
}

// SignedWith reports whether token is an HS512 JWT whose signature is
// secret's. It checks the signature only (not the expiry): enough to tell
// which JWT_SECRET signed a token, without linking a JWT library.
func SignedWith(secret []byte, token string) bool {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return false
	}
	hdr, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return false
	}
	var h struct{ Alg string }
	if json.Unmarshal(hdr, &h) != nil || h.Alg != "HS512" {
		return false
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return false
	}
	mac := hmac.New(sha512.New, secret)
	mac.Write([]byte(parts[0] + "." + parts[1]))
	return hmac.Equal(sig, mac.Sum(nil))
}
