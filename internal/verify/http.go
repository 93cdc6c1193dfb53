package verify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/rekeyhq/rekey"
)

// This file holds the http check: one request, no redirect followed
// unless within the origin, the status and a JSON field checked.

const restartHint = "is the service running? see `rekey services status`"

func (r *checkRun) http(ctx context.Context, h *rekey.HTTPCheck) (string, *attemptErr) {
	what := h.Method + " " + h.URL.Source()
	req, err := r.request(ctx, h, what)
	if err != nil {
		return "", err
	}
	client := r.o.HTTPClient
	if client == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.DisableKeepAlives = true
		client = &http.Client{Transport: tr}
		defer tr.CloseIdleConnections()
	}
	// The request carries secrets (headers, body, url): a redirect is
	// followed only when the check allows it and only within the origin.
	var refused *redirect
	c := *client
	c.CheckRedirect = func(next *http.Request, via []*http.Request) error {
		if h.FollowRedirects == rekey.RedirectsSameOrigin && len(via) < maxRedirects && sameOrigin(via[0].URL, next.URL) {
			return nil
		}
		refused = &redirect{from: via[len(via)-1].URL, to: next.URL, allowed: h.FollowRedirects == rekey.RedirectsSameOrigin, many: len(via) >= maxRedirects}
		return http.ErrUseLastResponse
	}
	resp, derr := c.Do(req)
	if derr != nil {
		var ue *url.Error
		if errors.As(derr, &ue) {
			derr = ue.Err
		}
		hint := restartHint
		if isTimeout(ctx, derr) {
			return "", fail("the service did not answer in time: raise timeout, or check that it is not stuck", "%s: no answer within %s", what, rekey.FormatDuration(r.c.Timeout))
		}
		return "", fail(hint, "%s: %s", what, derr.Error())
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	return response(h, what, resp.StatusCode, data, refused)
}

// request renders the check's url, body and headers into a request.
func (r *checkRun) request(ctx context.Context, h *rekey.HTTPCheck, what string) (*http.Request, *attemptErr) {
	u, err := r.render(h.URL)
	if err != nil {
		return nil, err
	}
	var body io.Reader
	if h.Body != nil {
		b, err := r.render(h.Body)
		if err != nil {
			return nil, err
		}
		body = strings.NewReader(b)
	}
	req, rerr := http.NewRequestWithContext(ctx, h.Method, u, body)
	if rerr != nil {
		// url.Error quotes the URL: only its cause is shown.
		var ue *url.Error
		if errors.As(rerr, &ue) {
			rerr = ue.Err
		}
		return nil, &attemptErr{msg: what + ": invalid request: " + rerr.Error(), hint: "fix url in the check", final: true}
	}
	for _, hd := range h.Headers {
		v, err := r.render(hd.Value)
		if err != nil {
			return nil, err
		}
		if strings.EqualFold(hd.Name, "Host") {
			req.Host = v
		} else {
			req.Header.Set(hd.Name, v)
		}
	}
	if req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", "rekey-verify")
	}
	return req, nil
}

// response judges the answer to the check's request: its status (and the
// redirect refused, if any) and the JSON field it must hold. data is the
// start of the body, which no message ever quotes.
func response(h *rekey.HTTPCheck, what string, status int, data []byte, refused *redirect) (string, *attemptErr) {
	okStatus := status >= 200 && status <= 299
	want := "2xx"
	if len(h.Expect) > 0 {
		okStatus = slices.Contains(h.Expect, status)
		ws := make([]string, len(h.Expect))
		for i, s := range h.Expect {
			ws[i] = strconv.Itoa(s)
		}
		want = strings.Join(ws, " or ")
	}
	if refused != nil && !(len(h.Expect) > 0 && okStatus) {
		return "", refused.fail(what, status)
	}
	if !okStatus {
		hint := "check the service's logs"
		switch {
		case status == 401 || status == 403:
			hint = "the application rejects the credentials: did it restart with the new secrets? (`rekey services restart`)"
		case status >= 500:
			hint = "the application fails: check its logs (a service that did not restart may still use the old secrets)"
		case status == 404 || status == 405:
			hint = "check the check's method and url"
		}
		return "", fail(hint, "%s: status %d, want %s", what, status, want)
	}
	if h.JSONField == "" {
		return fmt.Sprintf("status %d", status), nil
	}
	var doc any
	if err := json.Unmarshal(data, &doc); err != nil {
		return "", fail("the endpoint answered "+strconv.Itoa(status)+" without a JSON body: check the url and method", "%s: the response is not JSON", what)
	}
	if !hasField(doc, h.JSONField) {
		return "", fail("check the endpoint and the test account (a login that fails may answer 200 with an error body)", "%s: the response has no field %s", what, h.JSONField)
	}
	return fmt.Sprintf("status %d, %s present", status, h.JSONField), nil
}

// maxRedirects bounds the redirects a same-origin check follows.
const maxRedirects = 10

// redirect is one a check did not follow.
type redirect struct {
	from, to *url.URL
	allowed  bool // follow_redirects: same-origin, and to was not
	many     bool // too many redirects within the origin
}

// fail says which redirect was refused, naming its target's host (never
// its path or query, which may carry anything).
func (rd *redirect) fail(what string, status int) *attemptErr {
	to := rd.to.Scheme + "://" + rd.to.Host
	switch {
	case rd.many:
		return &attemptErr{msg: fmt.Sprintf("%s: more than %d redirects (last to %s)", what, maxRedirects, to), hint: "point url at the final address", final: true}
	case rd.allowed && strings.EqualFold(rd.from.Scheme, "https") && strings.EqualFold(rd.to.Scheme, "http"):
		return &attemptErr{msg: fmt.Sprintf("%s: redirect (status %d) from https to %s refused: it would send the check's secrets unencrypted", what, status, to),
			hint: "point url at the final address", final: true}
	case rd.allowed:
		return &attemptErr{msg: fmt.Sprintf("%s: redirect (status %d) to another origin, %s, refused: it would send the check's secrets there", what, status, to),
			hint: "follow_redirects: same-origin follows redirects to the same scheme, host and port only; point url at the final address", final: true}
	}
	return &attemptErr{msg: fmt.Sprintf("%s: redirect (status %d) to %s not followed: it would send the check's secrets there", what, status, to),
		hint: "point url at the final address, or add follow_redirects: same-origin to the check's http: to follow redirects within the same scheme, host and port", final: true}
}

// sameOrigin reports whether a and b have the same scheme, host and port
// (the scheme's default port when none is given).
func sameOrigin(a, b *url.URL) bool {
	port := func(u *url.URL) string {
		if p := u.Port(); p != "" {
			return p
		}
		if strings.EqualFold(u.Scheme, "https") {
			return "443"
		}
		return "80"
	}
	return strings.EqualFold(a.Scheme, b.Scheme) && strings.EqualFold(a.Hostname(), b.Hostname()) && port(a) == port(b)
}

// hasField reports whether the dotted path is present in doc and not null.
func hasField(doc any, path string) bool {
	for _, k := range strings.Split(path, ".") {
		switch d := doc.(type) {
		case map[string]any:
			v, ok := d[k]
			if !ok {
				return false
			}
			doc = v
		case []any:
			i, err := strconv.Atoi(k)
			if err != nil || i < 0 || i >= len(d) {
				return false
			}
			doc = d[i]
		default:
			return false
		}
	}
	return doc != nil
}
