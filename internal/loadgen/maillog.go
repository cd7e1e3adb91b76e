package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"sync"
)

// MailLog is a CodeSource fed with the development mailer's output: one
// JSON object per line with "to" and "code"
// (selfservice.NewLogMailer). Write it from the server's stdout or pass it
// to NewLogMailer directly. It keeps the last code per address until Code
// takes it, and runs no goroutine. The zero value is not ready; use
// NewMailLog.
type MailLog struct {
	mu      sync.Mutex
	partial []byte            // an unfinished last line
	codes   map[string]string // address -> last code, until taken
	arrived chan struct{}     // closed and replaced on every new code
}

// NewMailLog returns an empty MailLog.
func NewMailLog() *MailLog {
	return &MailLog{codes: make(map[string]string), arrived: make(chan struct{})}
}

// mailLine is the part of a mail line MailLog reads.
type mailLine struct {
	To   string `json:"to"`
	Code string `json:"code"`
}

// maxLine bounds an unfinished line, so that output without newlines
// cannot grow the log without bound.
const maxLine = 64 << 10

// Write takes mailer output; lines that are not mails with a code are
// skipped. It never fails.
func (m *MailLog) Write(p []byte) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	data := append(m.partial, p...)
	added := false
	for {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			break
		}
		var l mailLine
		if json.Unmarshal(data[:i], &l) == nil && l.To != "" && l.Code != "" {
			m.codes[l.To] = l.Code
			added = true
		}
		data = data[i+1:]
	}
	if len(data) > maxLine {
		data = nil
	}
	m.partial = append(m.partial[:0:0], data...)
	if added {
		close(m.arrived)
		m.arrived = make(chan struct{})
	}
	return len(p), nil
}

// Code implements CodeSource: it returns and forgets the last code mailed
// to email, waiting for one until ctx is done.
func (m *MailLog) Code(ctx context.Context, email string) (string, error) {
	for {
		m.mu.Lock()
		code, ok := m.codes[email]
		if ok {
			delete(m.codes, email)
		}
		arrived := m.arrived
		m.mu.Unlock()
		if ok {
			return code, nil
		}
		select {
		case <-arrived:
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}
