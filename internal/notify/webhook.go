package notify

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/textsafe"
)

// The headers of a webhook delivery.
const (
	HeaderEvent          = "X-Rekey-Event"
	HeaderIdempotencyKey = "X-Rekey-Idempotency-Key"
	HeaderTimestamp      = "X-Rekey-Timestamp"
	HeaderSignature      = "X-Rekey-Signature"
)

// DefaultTolerance is how far a receiver should let a signed timestamp be
// from its clock (Verify): replays older than this are refused.
const DefaultTolerance = 5 * time.Minute

// Webhook POSTs the message as JSON, signed with HMAC-SHA256 as GitHub and
// Stripe sign theirs: X-Rekey-Signature is "v1=" and the hex HMAC of
// "TIMESTAMP.BODY" under the signing secret, X-Rekey-Timestamp the Unix
// time in seconds.
type Webhook struct {
	h      *httpSender
	secret rekey.Value
}

// NewWebhook is the webhook channel: rawURL (from rekey.yaml, or the value
// of its url_secret) and the signing secret's value.
func NewWebhook(b Base, rawURL string, secret rekey.Value) (*Webhook, error) {
	if secret.IsZero() {
		return nil, rekey.Errorf(rekey.CodeInvalid, "webhook %s: the signing secret is empty", textsafe.Quote(b.ChannelName)).
			WithHint("set the secret its `secret:` names (rekey set NAME, or rotate it)")
	}
	h, err := newHTTP(b, "webhook", rawURL)
	if err != nil {
		return nil, err
	}
	h.Redact = hiding(b.Redact, secret)
	return &Webhook{h: h, secret: secret}, nil
}

func (w *Webhook) Name() string     { return w.h.Name() }
func (w *Webhook) Describe() string { return w.h.describe() }

func (w *Webhook) Send(ctx context.Context, m Message) error {
	_, err := w.Deliver(ctx, m)
	return err
}

func (w *Webhook) Deliver(ctx context.Context, m Message) (string, error) {
	body, err := m.Encode()
	if err != nil {
		return "", err
	}
	ts := unixSeconds(w.h.now())
	hdr := http.Header{}
	hdr.Set(HeaderEvent, m.Event)
	hdr.Set(HeaderIdempotencyKey, m.IdempotencyKey)
	hdr.Set(HeaderTimestamp, ts)
	hdr.Set(HeaderSignature, "v1="+Sign(w.secret.Reveal(), ts, body))
	return w.h.post(ctx, body, hdr)
}

// Sign is the hex HMAC-SHA256 of "timestamp.body" under secret.
func Sign(secret []byte, timestamp string, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(timestamp))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return hex.EncodeToString(mac.Sum(nil))
}

// Errors of Verify.
var (
	ErrNoSignature  = errors.New("notify: no v1 signature in the header")
	ErrBadSignature = errors.New("notify: the signature does not match")
	ErrStale        = errors.New("notify: the timestamp is outside the tolerance")
)

// Verify is what a receiver runs on a delivery: header is the value of
// X-Rekey-Signature (one or more "v1=HEX", comma-separated: one must
// match), timestamp that of X-Rekey-Timestamp, body the raw request body.
// A timestamp further than tolerance from now is refused (a replay);
// tolerance 0 means DefaultTolerance. The comparison is constant-time.
func Verify(secret []byte, header, timestamp string, body []byte, tolerance time.Duration) error {
	return verifyAt(secret, header, timestamp, body, tolerance, time.Now())
}

func verifyAt(secret []byte, header, timestamp string, body []byte, tolerance time.Duration, now time.Time) error {
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	ts, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return ErrStale
	}
	if d := now.Unix() - ts; math.Abs(float64(d)) > tolerance.Seconds() {
		return ErrStale
	}
	want := []byte(Sign(secret, timestamp, body))
	found := false
	for _, part := range strings.Split(header, ",") {
		sig, ok := strings.CutPrefix(strings.TrimSpace(part), "v1=")
		if !ok {
			continue
		}
		found = true
		if hmac.Equal([]byte(sig), want) {
			return nil
		}
	}
	if !found {
		return ErrNoSignature
	}
	return ErrBadSignature
}
