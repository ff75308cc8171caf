package inject

import (
	"strings"

	"github.com/hangup-dev/hangup/pkg/notify"
	"github.com/hangup-dev/hangup/pkg/notify/watch"
)

// AnnotationWatchAddr overrides Config.WatchAddr (--watch-addr): where the
// sidecar serves DisconnectWatch.Watch to the app (pull mode). "" is off.
const AnnotationWatchAddr = "hangup.dev/watch-addr"

// watchAddrWant says what a watch address looks like, for messages.
var watchAddrWant = "host:port where the sidecar serves DisconnectWatch to the app, such as " + watch.SuggestedAddr + `, or "" for off`

// checkWatchAddr reports whether v can be the sidecar's --watch-addr in a
// pod: host:port or empty. A unix socket would be in the sidecar's own
// filesystem, out of the app container's reach.
func checkWatchAddr(v string) bool {
	return v == "" || !strings.HasPrefix(v, "unix:") && notify.CheckAddr(v) == nil
}

// parseWatchAddr reads AnnotationWatchAddr.
func parseWatchAddr(name, v string) (string, error) {
	if !checkWatchAddr(v) {
		return "", &AnnotationError{name, v, watchAddrWant}
	}
	return v, nil
}

// watchArgs are the sidecar's flags for addr.
func watchArgs(addr string) []string {
	if addr == "" {
		return nil
	}
	return []string{"--watch-addr=" + addr}
}
