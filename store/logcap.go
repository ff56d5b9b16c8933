package store

// MaxLogBytes bounds one run's log in every store: text past it is dropped
// and the log says so.
const MaxLogBytes = 1 << 20

// truncatedNote ends a log that reached MaxLogBytes.
var truncatedNote = []byte("\n[log truncated: it reached its size limit]\n")

// AppendLogText is old with text appended, cut at MaxLogBytes with a note
// saying so. ok is false when old is full already and nothing changes.
// Every store's AppendLog keeps its log with it.
func AppendLogText(old, text []byte) (buf []byte, ok bool) {
	if len(old) >= MaxLogBytes {
		return old, false
	}
	buf = make([]byte, 0, min(len(old)+len(text), MaxLogBytes))
	buf = append(append(buf, old...), text...)
	if len(buf) > MaxLogBytes {
		buf = append(buf[:MaxLogBytes-len(truncatedNote)], truncatedNote...)
	}
	return buf, true
}
