package notify

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/textsafe"
)

// Bounds of an HTTP delivery.
const (
	maxResponseBody   = 64 << 10 // read of a response body, at most
	maxExcerpt        = 200      // of a failing response's body shown in the error
	maxRedirects      = 3        // same-host redirects followed
	maxResponseHeader = 64 << 10
)

// httpSender posts a body to one URL for the channels that speak HTTP.
// The URL may be secret (a Slack incoming webhook): errors name its
// scheme and host only.
type httpSender struct {
	Base
	kind string
	url  *url.URL
}

// newHTTP parses rawURL for a channel of kind; the error never quotes the
// URL (it may be a secret).
func newHTTP(b Base, kind, rawURL string) (*httpSender, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, rekey.Errorf(rekey.CodeInvalid, "%s %s: the URL is not an http:// or https:// URL with a host", kind, textsafe.Quote(b.ChannelName)).
			WithHint("check the channel's url (or the secret its url_secret names)")
	}
	return &httpSender{Base: b, kind: kind, url: u}, nil
}

// describe is "KIND https://host/…": no path, query or user info.
func (h *httpSender) describe() string {
	s := h.kind + " " + h.url.Scheme + "://" + h.url.Host
	if (h.url.Path != "" && h.url.Path != "/") || h.url.RawQuery != "" {
		s += "/…"
	}
	return textsafe.Quote(s)
}

func (h *httpSender) host() string { return textsafe.Quote(h.url.Host) }

// client follows a redirect only to the same scheme and host (at most
// maxRedirects); any other is returned as the 3xx it is, and reported.
func (h *httpSender) client() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxResponseHeaderBytes = maxResponseHeader
	tr.ResponseHeaderTimeout = h.timeout()
	return &http.Client{
		Timeout:   h.timeout(),
		Transport: tr,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) > maxRedirects || req.URL.Scheme != via[0].URL.Scheme || req.URL.Host != via[0].URL.Host {
				return http.ErrUseLastResponse
			}
			return nil
		},
	}
}

// post sends body as JSON with the extra headers and returns the status
// code as text; a status other than 2xx is an error naming it.
func (h *httpSender) post(ctx context.Context, body []byte, hdr http.Header) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, h.timeout())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url.String(), bytes.NewReader(body))
	if err != nil {
		return "", h.failf(h.kind, "check the channel's URL", "cannot build the request")
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "rekey-notify/1")
	c := h.client()
	defer c.CloseIdleConnections()
	resp, err := c.Do(req)
	if err != nil {
		return "", h.transportErr(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody))
	code := resp.StatusCode
	if code >= 200 && code <= 299 {
		return strconv.Itoa(code), nil
	}
	return "", h.statusErr(resp, data)
}

// transportErr describes a request that got no answer, without the URL
// (url.Error's text holds it).
func (h *httpSender) transportErr(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return h.failf(h.kind, "check that the endpoint is up and answers quickly, or raise the channel's timeout",
			"no answer from %s within %s", h.host(), h.timeout())
	}
	if errors.Is(err, context.Canceled) {
		return h.failf(h.kind, "", "interrupted while sending to %s", h.host())
	}
	return h.failf(h.kind, "check the channel's URL and that the endpoint is reachable from here",
		"cannot reach %s: %s", h.host(), textsafe.Lines(h.redact(err.Error())))
}

// statusErr describes a non-2xx answer: its status (the code and Go's
// text for it, never the server's reason phrase), a redirect's target
// host, and a short excerpt of the body made safe for a terminal.
func (h *httpSender) statusErr(resp *http.Response, body []byte) error {
	code := resp.StatusCode
	msg := "HTTP " + strconv.Itoa(code)
	if t := http.StatusText(code); t != "" {
		msg += " " + t
	}
	msg += " from " + h.host()
	hint := "check the channel's settings and the endpoint's logs"
	if code >= 300 && code <= 399 {
		where := "elsewhere"
		if loc, err := resp.Location(); err == nil {
			where = "to " + textsafe.Quote(loc.Scheme+"://"+loc.Host)
		}
		msg += ": redirected " + where + ", not followed"
		hint = "rekey follows no redirect to another host: set the channel's URL to the final one"
	} else if ex := excerpt(h.redact, body); ex != "" {
		msg += ": " + ex
	}
	return h.failf(h.kind, hint, "%s", msg)
}

// excerpt is the start of a response body as one quoted line: at most
// maxExcerpt bytes, redacted, whitespace folded, terminal controls escaped.
func excerpt(redact func(string) string, body []byte) string {
	if len(body) > maxExcerpt {
		body = body[:maxExcerpt]
	}
	s := strings.ToValidUTF8(string(body), "")
	s = strings.Join(strings.Fields(s), " ")
	if s == "" {
		return ""
	}
	if redact != nil {
		s = redact(s)
	}
	if len(body) == maxExcerpt {
		s += "…"
	}
	return strconv.Quote(s) // escapes every control, never a raw ESC
}

// unixSeconds is t as a decimal Unix time.
func unixSeconds(t time.Time) string { return strconv.FormatInt(t.Unix(), 10) }
