package keepalive

import "time"

// Defaults of Config, all in one place. Time and Timeout are shorter than
// grpc-go's server defaults (2h and 20s) because noticing a dead client
// quickly is the point of hangup; the enforcement defaults are grpc-go's, so
// clients tuned for a grpc-go server behave the same behind hangup.
const (
	// DefaultTime is Config.Time.
	DefaultTime = 30 * time.Second
	// DefaultTimeout is Config.Timeout.
	DefaultTimeout = 10 * time.Second
	// DefaultMinTime is Config.MinTime (grpc-go: 5 minutes).
	DefaultMinTime = 5 * time.Minute
	// DefaultPermitWithoutStream is Config.PermitWithoutStream (grpc-go: false).
	DefaultPermitWithoutStream = false
	// DefaultMaxConnectionIdle is Config.MaxConnectionIdle: off.
	DefaultMaxConnectionIdle = time.Duration(0)
	// DefaultMaxConnectionAge is Config.MaxConnectionAge: off.
	DefaultMaxConnectionAge = time.Duration(0)
	// DefaultMaxConnectionAgeGrace is Config.MaxConnectionAgeGrace: infinite.
	DefaultMaxConnectionAgeGrace = time.Duration(0)
	// DefaultRTTInterval is Config.RTTInterval: off.
	DefaultRTTInterval = time.Duration(0)
)

// Limits and fixed protocol values.
const (
	// MinDuration is the smallest value accepted for any duration of Config
	// that is turned on. Below it a timer would fire so often that the policy
	// itself becomes the load (grpc-go raises server Time below 1s to 1s).
	MinDuration = time.Second

	// MaxPingStrikes is how many policy violations a client may commit;
	// the next one ends the connection with GOAWAY ENHANCE_YOUR_CALM
	// "too_many_pings" (grpc-go's maxPingStrikes).
	MaxPingStrikes = 2

	// noStreamPingInterval is how far apart client pings must be while no
	// stream is open and PermitWithoutStream is false. grpc-go uses the same
	// 2 hours (its defaultPingTimeout): the first such ping is free, any
	// further one within 2 hours is a strike.
	noStreamPingInterval = 2 * time.Hour

	// maxAgeJitter spreads MaxConnectionAge by ±10% so that connections
	// opened together do not all reconnect together (gRFC A9).
	maxAgeJitter = 0.10
)
