package grace

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// MaxGrace is the longest grace a method may have: the app's resources stay
// held for a lost client until it expires, so hours would hide real losses.
const MaxGrace = time.Hour

// RulesSyntax says what a rule list looks like, for error messages.
const RulesSyntax = "comma-separated /pkg.Service/Method=DURATION or /pkg.Service/*=DURATION, e.g. /chat.v1.Chat/Subscribe=10s,/game.v1.Game/*=5s (each above 0s, at most 1h)"

// Rules says how long each method's connection losses are held. The zero
// value holds nothing.
//
// It is keyed by service ("/pkg.Service/") so that looking up a method of
// an ungraced service costs one map lookup with no allocation: the relay
// does it for every new stream when grace is configured.
type Rules struct {
	services map[string]serviceRule
}

// serviceRule is the grace of a service's methods: methods[name] when
// listed, else all (0 when the service has no "*" rule).
type serviceRule struct {
	all     time.Duration
	methods map[string]time.Duration // keyed by the full :path
}

// ParseRules parses a list of "/pkg.Service/Method=DURATION" and
// "/pkg.Service/*=DURATION" rules, comma-separated. A method rule wins over
// its service's "*" rule; the same pattern twice is an error. The empty
// string is no rules.
func ParseRules(s string) (Rules, error) {
	var r Rules
	s = strings.TrimSpace(s)
	if s == "" {
		return r, nil
	}
	seen := map[string]bool{}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		pattern, value, ok := strings.Cut(item, "=")
		if !ok {
			return Rules{}, fmt.Errorf("rule %q has no '=': want %s", item, RulesSyntax)
		}
		if err := r.add(pattern, value, seen); err != nil {
			return Rules{}, err
		}
	}
	return r, nil
}

func (r *Rules) add(pattern, value string, seen map[string]bool) error {
	d, err := time.ParseDuration(value)
	if err != nil || d <= 0 || d > MaxGrace {
		return fmt.Errorf("rule %s=%s: grace %q is not a duration above 0s and at most %s: want %s", pattern, value, value, MaxGrace, RulesSyntax)
	}
	i := strings.LastIndexByte(pattern, '/')
	if !validPattern(pattern, i) {
		return fmt.Errorf("rule %s=%s: method %q is not /pkg.Service/Method or /pkg.Service/*: want %s", pattern, value, pattern, RulesSyntax)
	}
	if seen[pattern] {
		return fmt.Errorf("rule %s=%s: method %q is given twice: want each method or service once", pattern, value, pattern)
	}
	seen[pattern] = true
	if r.services == nil {
		r.services = map[string]serviceRule{}
	}
	svc := pattern[:i+1]
	sr := r.services[svc]
	if pattern[i+1:] == "*" {
		sr.all = d
	} else {
		if sr.methods == nil {
			sr.methods = map[string]time.Duration{}
		}
		sr.methods[pattern] = d
	}
	r.services[svc] = sr
	return nil
}

// validPattern says pattern is "/service/method" or "/service/*", i the
// index of its last '/'.
func validPattern(pattern string, i int) bool {
	if !strings.HasPrefix(pattern, "/") || strings.Count(pattern, "/") != 2 {
		return false
	}
	svc, name := pattern[1:i], pattern[i+1:]
	const bad = " \t*"
	return svc != "" && name != "" && !strings.ContainsAny(svc, bad) && (name == "*" || !strings.ContainsAny(name, bad))
}

// For returns the grace of method (a :path), 0 when it has none. It does
// not allocate.
func (r Rules) For(method string) time.Duration {
	i := strings.LastIndexByte(method, '/')
	if i < 0 {
		return 0
	}
	sr, ok := r.services[method[:i+1]]
	if !ok {
		return 0
	}
	if d, ok := sr.methods[method]; ok {
		return d
	}
	return sr.all
}

// Empty says there is no rule: nothing is ever held.
func (r Rules) Empty() bool { return len(r.services) == 0 }

// String is the rules in ParseRules' syntax, sorted.
func (r Rules) String() string {
	var parts []string
	for svc, sr := range r.services {
		if sr.all > 0 {
			parts = append(parts, svc+"*="+sr.all.String())
		}
		for m, d := range sr.methods {
			parts = append(parts, m+"="+d.String())
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

// SessionHeaderSyntax says what a session header looks like, for error
// messages.
const SessionHeaderSyntax = "a request header name such as x-session-id (RFC 9110 token characters; not a pseudo-header, not x-hangup-*)"

// CheckSessionHeader reports whether name can be the session header: a
// header name the client sends and the relay passes on. Pseudo-headers
// are not a session, and x-hangup-* headers are dropped from clients.
func CheckSessionHeader(name string) error {
	if name == "" {
		return fmt.Errorf("empty: want %s", SessionHeaderSyntax)
	}
	lower := strings.ToLower(name)
	if strings.HasPrefix(lower, ":") || strings.HasPrefix(lower, "x-hangup-") {
		return fmt.Errorf("%q is set by the sidecar or the protocol, never by the client: want %s", name, SessionHeaderSyntax)
	}
	for _, r := range name {
		// RFC 9110 section 5.6.2 token characters.
		if r > 0x7e || r <= 0x20 || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, r) {
			return fmt.Errorf("%q is not a header name: want %s", name, SessionHeaderSyntax)
		}
	}
	return nil
}
