package web

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"
)

// RunKey is the key a link to one run's page carries as ?key= when the
// pages need a token: a browser opened from a chat link sends no
// Authorization header. It is derived from the token and the run's
// number, so it opens that run's page and nothing else, and changes when
// the token does.
func RunKey(token string, id uint64) string {
	m := hmac.New(sha256.New, []byte(token))
	m.Write([]byte("stagebot run " + strconv.FormatUint(id, 10)))
	return hex.EncodeToString(m.Sum(nil))[:32]
}

// runGuard lets a request for /runs/N in with the bearer token, or with
// run N's key in the query.
func (s *Server) runGuard(h http.Handler) http.Handler {
	bearer := s.guard(h)
	if s.o.Token == "" {
		return bearer
	}
	withKey := s.checkHost(h)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k := r.URL.Query().Get("key")
		if k == "" {
			bearer.ServeHTTP(w, r)
			return
		}
		id, err := strconv.ParseUint(strings.TrimPrefix(r.URL.Path, "/runs/"), 10, 64)
		if err != nil || subtle.ConstantTimeCompare([]byte(k), []byte(RunKey(s.o.Token, id))) != 1 {
			http.Error(w, "unauthorized: this key does not open this run's page; ask the bot for the run's log again (!stage log N) for a current link", http.StatusUnauthorized)
			return
		}
		withKey.ServeHTTP(w, r)
	})
}
