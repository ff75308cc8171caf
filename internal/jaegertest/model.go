package jaegertest

// The types below decode the JSON of Jaeger's query HTTP API
// (/api/traces, /api/traces/{id}), the v1-style API that Jaeger v2's
// jaeger_query extension still serves and that the Jaeger UI reads. Times
// are microseconds: StartTime since the Unix epoch, Duration and
// Log.Timestamp likewise.

// Response is the envelope of every /api/traces answer.
type Response struct {
	Data   []Trace `json:"data"`
	Errors []struct {
		Code int    `json:"code"`
		Msg  string `json:"msg"`
	} `json:"errors"`
}

// Trace is one trace with its spans and the processes (services) they ran in.
type Trace struct {
	TraceID   string             `json:"traceID"`
	Spans     []Span             `json:"spans"`
	Processes map[string]Process `json:"processes"`
}

// Span is one span; OpenTelemetry span events are its Logs, with the event
// name in the "event" field, and the span kind and status are tags
// (span.kind, otel.status_code, error).
type Span struct {
	TraceID       string      `json:"traceID"`
	SpanID        string      `json:"spanID"`
	OperationName string      `json:"operationName"`
	References    []Reference `json:"references"`
	StartTime     int64       `json:"startTime"` // µs since the epoch
	Duration      int64       `json:"duration"`  // µs
	Tags          []KeyValue  `json:"tags"`
	Logs          []Log       `json:"logs"`
	ProcessID     string      `json:"processID"`
}

// Reference is a parent (CHILD_OF) or a span link (FOLLOWS_FROM).
type Reference struct {
	RefType string `json:"refType"`
	TraceID string `json:"traceID"`
	SpanID  string `json:"spanID"`
}

// KeyValue is a tag or log field. Value is a string, float64 (JSON numbers,
// int64 tags included) or bool.
type KeyValue struct {
	Key   string `json:"key"`
	Type  string `json:"type"`
	Value any    `json:"value"`
}

// Log is a span event.
type Log struct {
	Timestamp int64      `json:"timestamp"` // µs since the epoch
	Fields    []KeyValue `json:"fields"`
}

// Process is the resource a span came from.
type Process struct {
	ServiceName string     `json:"serviceName"`
	Tags        []KeyValue `json:"tags"`
}

// Span returns the first span named name, or nil.
func (t *Trace) Span(name string) *Span {
	for i := range t.Spans {
		if t.Spans[i].OperationName == name {
			return &t.Spans[i]
		}
	}
	return nil
}

// Tag returns the value of the span's tag key.
func (s *Span) Tag(key string) (any, bool) { return find(s.Tags, key) }

// ParentSpanID returns the span id of the CHILD_OF reference in the same
// trace, "" for a root.
func (s *Span) ParentSpanID() string {
	for _, r := range s.References {
		if r.RefType == "CHILD_OF" && r.TraceID == s.TraceID {
			return r.SpanID
		}
	}
	return ""
}

// Event returns the span's first log whose "event" field is name, or nil.
func (s *Span) Event(name string) *Log {
	for i := range s.Logs {
		if v, _ := s.Logs[i].Field("event"); v == name {
			return &s.Logs[i]
		}
	}
	return nil
}

// Name is the log's "event" field: the OpenTelemetry event name.
func (l *Log) Name() string {
	v, _ := l.Field("event")
	s, _ := v.(string)
	return s
}

// Field returns the value of the log field key.
func (l *Log) Field(key string) (any, bool) { return find(l.Fields, key) }

func find(kvs []KeyValue, key string) (any, bool) {
	for _, kv := range kvs {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return nil, false
}
