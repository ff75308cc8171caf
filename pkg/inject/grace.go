package inject

import (
	"strings"

	"github.com/hangup-dev/hangup/pkg/grace"
)

// Reconnect grace's annotations (pkg/grace), off unless both are set.
const (
	// AnnotationReconnectGrace is the sidecar's --reconnect-grace: per
	// method, how long the events of a lost connection are held for the
	// client to reconnect, e.g. "/chat.v1.Chat/Subscribe=10s,/game.v1.Game/*=5s".
	AnnotationReconnectGrace = "hangup.dev/reconnect-grace"
	// AnnotationSessionHeader is the sidecar's --session-header: the
	// request header naming a client's session, e.g. x-session-id.
	// Required with AnnotationReconnectGrace.
	AnnotationSessionHeader = "hangup.dev/session-header"
)

// graceSettings are a pod's reconnect grace; the zero value is off.
type graceSettings struct {
	rules         string // as the annotation gave them, validated
	sessionHeader string
}

// parseGrace reads the reconnect grace annotations, validated as the
// sidecar validates its flags, so that a bad value denies the pod rather
// than crash-looping the sidecar.
func parseGrace(a map[string]string) (graceSettings, error) {
	var s graceSettings
	rules, hasRules := a[AnnotationReconnectGrace]
	header, hasHeader := a[AnnotationSessionHeader]
	if hasHeader {
		if err := grace.CheckSessionHeader(header); err != nil {
			return s, &AnnotationError{AnnotationSessionHeader, header, grace.SessionHeaderSyntax}
		}
		s.sessionHeader = strings.ToLower(header)
	}
	if !hasRules {
		return s, nil
	}
	r, err := grace.ParseRules(rules)
	if err != nil {
		problem, _, _ := strings.Cut(err.Error(), ": want ")
		return s, &AnnotationError{AnnotationReconnectGrace, rules, grace.RulesSyntax + "; " + problem}
	}
	if r.Empty() {
		return s, nil
	}
	if !hasHeader {
		return s, &AnnotationError{AnnotationSessionHeader, "", grace.SessionHeaderSyntax + ", required with " + AnnotationReconnectGrace}
	}
	s.rules = r.String()
	return s, nil
}

// args are the sidecar's flags for s.
func (s graceSettings) args() []string {
	if s.rules == "" {
		return nil
	}
	return []string{"--reconnect-grace=" + s.rules, "--session-header=" + s.sessionHeader}
}
