package httpapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"
)

// refuseNUL answers 422, in the operation's error shape, for a request
// whose path, query or body holds a NUL character: %00 in the URL or a
// form, \u0000 in JSON, or the raw byte. PostgreSQL cannot store NUL in
// text while SQLite can, so without this one request would be a 500 on one
// engine and stored on the other; no client needs to send one. The error
// names the field when it can ("body.messages[0].content", "path.id").
//
// It runs after authenticate, so only a signed-in caller's body (or a
// public operation's) is read here; huma then reads the copy.
func (s *server) refuseNUL(ctx huma.Context, next func(huma.Context)) {
	op := ctx.Operation()
	r, _ := humago.Unwrap(ctx)
	if loc, ok := nulInURL(r, op); ok {
		s.refuseNULAt(ctx, loc)
		return
	}
	if op.RequestBody == nil || r.Body == nil || r.Body == http.NoBody || isMultipart(ctx.Header("Content-Type")) {
		// A multipart form carries files, binary with NUL bytes; its
		// handler checks the text fields itself (see readAnalyzeForm).
		next(ctx)
		return
	}
	buf := bodyBuffers.Get().(*bytes.Buffer)
	defer func() {
		if buf.Cap() <= 1<<20 {
			buf.Reset()
			bodyBuffers.Put(buf)
		}
	}()
	// Read as huma would: up to the operation's limit, and one byte more
	// to tell a body over it, which is left for huma to refuse.
	body, src, limit := r.Body, io.Reader(r.Body), op.MaxBodyBytes
	if limit > 0 {
		src = io.LimitReader(body, limit+1)
	}
	_, err := buf.ReadFrom(src)
	if err == nil && (limit <= 0 || int64(buf.Len()) <= limit) {
		if loc, ok := nulInBody(buf.Bytes(), ctx.Header("Content-Type")); ok {
			s.refuseNULAt(ctx, loc)
			return
		}
	}
	// huma reads the body again from here: too large or failing (a slow
	// client), it answers as it would have.
	rest := io.Reader(body)
	if err != nil {
		rest = errReader{err}
	}
	r.Body = readCloser{Reader: io.MultiReader(bytes.NewReader(buf.Bytes()), rest), Closer: body}
	next(ctx)
}

// isMultipart reports whether contentType is a multipart form's.
func isMultipart(contentType string) bool {
	mt, _, _ := mime.ParseMediaType(contentType)
	return mt == "multipart/form-data"
}

var bodyBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

type readCloser struct {
	io.Reader
	io.Closer
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

func (s *server) refuseNULAt(ctx huma.Context, loc string) {
	huma.WriteErr(s.api, ctx, http.StatusUnprocessableEntity, "NUL characters are not accepted",
		&huma.ErrorDetail{Location: loc, Message: "must not contain a NUL character"})
}

// nulInURL finds a NUL in the path (naming the path parameter that holds
// it) or the query (naming the query parameter).
func nulInURL(r *http.Request, op *huma.Operation) (loc string, found bool) {
	if strings.IndexByte(r.URL.Path, 0) >= 0 {
		for _, p := range op.Parameters {
			if p.In == "path" && strings.IndexByte(r.PathValue(p.Name), 0) >= 0 {
				return "path." + p.Name, true
			}
		}
		return "path", true
	}
	if !strings.Contains(r.URL.RawQuery, "%00") && strings.IndexByte(r.URL.RawQuery, 0) < 0 {
		return "", false
	}
	q, _ := url.ParseQuery(r.URL.RawQuery)
	if name, ok := nulInForm(q); ok {
		return "query." + name, true
	}
	return "query", true
}

// nulInBody finds a NUL in a body of the given content type: a form's
// %00, or in JSON (and anything else) the raw byte or the escape \u0000.
func nulInBody(b []byte, contentType string) (loc string, found bool) {
	mt, _, _ := mime.ParseMediaType(contentType)
	if mt == "application/x-www-form-urlencoded" {
		if !bytes.Contains(b, []byte("%00")) && bytes.IndexByte(b, 0) < 0 {
			return "", false
		}
		q, _ := url.ParseQuery(string(b))
		if name, ok := nulInForm(q); ok {
			return "body." + name, true
		}
		return "body", true
	}
	if !jsonHasNUL(b) {
		return "", false
	}
	var v any
	if json.Unmarshal(b, &v) == nil {
		if path, ok := nulInJSON(v, ""); ok {
			return "body" + path, true
		}
	}
	return "body", true
}

// jsonHasNUL reports whether JSON text b holds a NUL: the raw byte, or the
// escape \u0000 (its hex digits have no case) not itself escaped, as
// \\u0000 is a backslash followed by "u0000".
func jsonHasNUL(b []byte) bool {
	if bytes.IndexByte(b, 0) >= 0 {
		return true
	}
	esc := []byte(`\u0000`)
	for i := 0; ; {
		j := bytes.Index(b[i:], esc)
		if j < 0 {
			return false
		}
		j += i
		k := j
		for k > 0 && b[k-1] == '\\' {
			k--
		}
		if (j-k)%2 == 0 {
			return true
		}
		i = j + 1
	}
}

// nulInJSON returns the path (".a.b[2]") of the first string or key in v
// that holds a NUL, looking at object members in key order.
func nulInJSON(v any, path string) (string, bool) {
	switch v := v.(type) {
	case string:
		return path, strings.IndexByte(v, 0) >= 0
	case []any:
		for i, e := range v {
			if p, ok := nulInJSON(e, fmt.Sprintf("%s[%d]", path, i)); ok {
				return p, true
			}
		}
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			if strings.IndexByte(k, 0) >= 0 {
				return path, true
			}
			if p, ok := nulInJSON(v[k], path+"."+k); ok {
				return p, true
			}
		}
	}
	return "", false
}

// nulInForm returns the name of the first form or query parameter, in name
// order, whose name or value holds a NUL.
func nulInForm(q url.Values) (string, bool) {
	names := make([]string, 0, len(q))
	for k := range q {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		if strings.IndexByte(k, 0) >= 0 {
			return strings.ReplaceAll(k, "\x00", "%00"), true
		}
		for _, v := range q[k] {
			if strings.IndexByte(v, 0) >= 0 {
				return k, true
			}
		}
	}
	return "", false
}
