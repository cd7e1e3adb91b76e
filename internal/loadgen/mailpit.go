package loadgen

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"
)

// Mailpit is a CodeSource for a server whose mailer delivers over SMTP to
// Mailpit (https://mailpit.axllent.org): it reads the codes back from
// Mailpit's API.
//
// It listens to Mailpit's event stream (the WebSocket at /api/events),
// which announces each new mail with its recipients and its snippet, and
// keeps the newest code per address, as MailLog does, so that reading a
// code costs Mailpit nothing: each call of its HTTP API costs it several
// milliseconds of CPU, which a search per code would take from the server
// under measurement on the same machine. A code that the stream has not
// brought within a second, because it arrived before NewMailpit or the
// stream broke, is searched for (GET /api/v1/search?query=to:"ADDRESS"),
// once a second until ctx ends.
//
// A code is a group of six digits with white space or nothing on either
// side in the snippet, the mail's first 250 characters or so with its
// lines joined: the code mail has the code on a line of its own, and the
// undo links and dates of notices have no such group.
type Mailpit struct {
	api    string // base URL, no trailing slash
	client *http.Client
	events net.Conn
	done   chan struct{} // closed when the stream's reader returns

	mu      sync.Mutex
	codes   map[string]mailedCode // address, lower case -> newest code not taken
	taken   map[string]time.Time  // ids of the mails whose code was taken
	arrived chan struct{}         // closed and replaced on every new code
}

type mailedCode struct {
	code, id string
	at       time.Time
}

// NewMailpit connects to the event stream of the Mailpit whose API is at
// api, such as http://127.0.0.1:8025, and returns once connected; it
// searches with client (nil for a client of its own). Like
// Options.BaseURL, api must be http on a loopback host. Close it after
// use: it runs a goroutine, reading the stream.
func NewMailpit(ctx context.Context, api string, client *http.Client) (*Mailpit, error) {
	api = strings.TrimRight(api, "/")
	if err := checkLoopback("Mailpit API", api); err != nil {
		return nil, err
	}
	if client == nil {
		client = &http.Client{Transport: &http.Transport{Proxy: nil}}
	}
	m := &Mailpit{
		api: api, client: client, done: make(chan struct{}),
		codes: make(map[string]mailedCode), taken: make(map[string]time.Time), arrived: make(chan struct{}),
	}
	conn, r, err := dialEvents(ctx, api)
	if err != nil {
		return nil, fmt.Errorf("mailpit: events: %w", err)
	}
	m.events = conn
	go m.read(conn, r)
	return m, nil
}

// Close ends the event stream and waits for its reader.
func (m *Mailpit) Close() error {
	err := m.events.Close()
	<-m.done
	return err
}

// codeWord is a code as it stands in a snippet.
var codeWord = regexp.MustCompile(`(?:^|\s)([0-9]{6})(?:\s|$)`)

// searchAfter is how long Code waits for the stream before it searches,
// and then between two searches.
const searchAfter = time.Second

// Code implements CodeSource: it returns and forgets the code of the
// newest code mail to email, waiting for one until ctx is done.
func (m *Mailpit) Code(ctx context.Context, email string) (string, error) {
	key := strings.ToLower(email)
	search := time.NewTimer(searchAfter)
	defer search.Stop()
	for {
		m.mu.Lock()
		c, ok := m.codes[key]
		if ok {
			delete(m.codes, key)
			m.taken[c.id] = time.Now()
		}
		arrived := m.arrived
		m.mu.Unlock()
		if ok {
			return c.code, nil
		}
		select {
		case <-arrived:
		case <-search.C:
			c, err := m.search(ctx, email)
			if err != nil || c.code != "" {
				return c.code, err
			}
			search.Reset(searchAfter)
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}

// summary is what Code reads of a mail: Mailpit's message summary.
type summary struct {
	ID      string
	To      []struct{ Address string }
	Snippet string
}

// code returns the mail's code, "" if it has none.
func (s summary) code() string {
	if c := codeWord.FindStringSubmatch(s.Snippet); c != nil {
		return c[1]
	}
	return ""
}

// add keeps the code of a mail that the stream announced.
func (m *Mailpit) add(s summary) {
	code := s.code()
	if code == "" {
		return
	}
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.taken[s.ID]; ok {
		// Found by a search before the stream brought it.
		return
	}
	for _, to := range s.To {
		m.codes[strings.ToLower(to.Address)] = mailedCode{code: code, id: s.ID, at: now}
	}
	// Mails that nobody asks for (other clients of the same Mailpit)
	// must not pile up.
	if len(m.codes)+len(m.taken) > 4096 {
		for k, c := range m.codes {
			if now.Sub(c.at) > time.Minute {
				delete(m.codes, k)
			}
		}
		for id, at := range m.taken {
			if now.Sub(at) > time.Minute {
				delete(m.taken, id)
			}
		}
	}
	close(m.arrived)
	m.arrived = make(chan struct{})
}

// search returns the newest code mail to email that Mailpit holds, if its
// code was not taken; a zero mailedCode if none.
func (m *Mailpit) search(ctx context.Context, email string) (mailedCode, error) {
	path := m.api + "/api/v1/search?limit=20&query=" + url.QueryEscape(`to:"`+email+`"`)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, path, nil)
	if err != nil {
		return mailedCode{}, err
	}
	resp, err := m.client.Do(req)
	if err != nil {
		return mailedCode{}, fmt.Errorf("mailpit: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return mailedCode{}, fmt.Errorf("mailpit: search answered %s", resp.Status)
	}
	var found struct{ Messages []summary }
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(&found); err != nil {
		return mailedCode{}, fmt.Errorf("mailpit: search: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	// Newest first. The search matches the addresses that hold email,
	// such as xa@example.com for a@example.com: only email's own count.
	for _, s := range found.Messages {
		code := s.code()
		if code == "" || !sentTo(s, email) {
			continue
		}
		if _, ok := m.taken[s.ID]; ok {
			return mailedCode{}, nil
		}
		m.taken[s.ID] = time.Now()
		return mailedCode{code: code, id: s.ID}, nil
	}
	return mailedCode{}, nil
}

func sentTo(s summary, email string) bool {
	for _, a := range s.To {
		if strings.EqualFold(a.Address, email) {
			return true
		}
	}
	return false
}

// read adds the code of every new mail the stream announces, until the
// stream ends.
func (m *Mailpit) read(conn net.Conn, r *bufio.Reader) {
	defer close(m.done)
	defer conn.Close()
	for {
		payload, err := nextMessage(conn, r)
		if err != nil {
			return
		}
		var ev struct {
			Type string
			Data json.RawMessage
		}
		if json.Unmarshal(payload, &ev) != nil || ev.Type != "new" {
			continue
		}
		var s summary
		if json.Unmarshal(ev.Data, &s) == nil {
			m.add(s)
		}
	}
}

// wsGUID is the WebSocket handshake's constant (RFC 6455, 1.3).
const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// dialEvents opens the WebSocket at api/api/events: the few lines of RFC
// 6455 a reader of text messages needs, without compression (not asked
// for, so not used).
func dialEvents(ctx context.Context, api string) (net.Conn, *bufio.Reader, error) {
	u, err := url.Parse(api + "/api/events")
	if err != nil {
		return nil, nil, err
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return nil, nil, err
	}
	var nonce [16]byte
	_, _ = rand.Read(nonce[:])
	key := base64.StdEncoding.EncodeToString(nonce[:])
	req := &http.Request{Method: http.MethodGet, URL: u, Host: u.Host, Header: http.Header{
		"Upgrade":               {"websocket"},
		"Connection":            {"Upgrade"},
		"Sec-Websocket-Key":     {key},
		"Sec-Websocket-Version": {"13"},
	}}
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(conn)
	err = req.Write(conn)
	var resp *http.Response
	if err == nil {
		resp, err = http.ReadResponse(r, req)
	}
	if !stop() && err == nil {
		err = ctx.Err()
	}
	if err == nil {
		sum := sha1.Sum([]byte(key + wsGUID))
		if resp.StatusCode != http.StatusSwitchingProtocols ||
			resp.Header.Get("Sec-Websocket-Accept") != base64.StdEncoding.EncodeToString(sum[:]) {
			err = fmt.Errorf("handshake answered %s", resp.Status)
		}
	}
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	_ = conn.SetDeadline(time.Time{})
	return conn, r, nil
}

// maxEvent bounds one message of the stream.
const maxEvent = 1 << 20

// nextMessage returns the payload of the next data message, answering
// pings and closes on the way.
func nextMessage(conn net.Conn, r *bufio.Reader) ([]byte, error) {
	var msg []byte
	for {
		var h [2]byte
		if _, err := io.ReadFull(r, h[:]); err != nil {
			return nil, err
		}
		if h[0]&0x70 != 0 {
			return nil, errors.New("websocket: reserved bits set")
		}
		fin, op := h[0]&0x80 != 0, h[0]&0x0f
		n := uint64(h[1] & 0x7f)
		switch n {
		case 126:
			var b [2]byte
			if _, err := io.ReadFull(r, b[:]); err != nil {
				return nil, err
			}
			n = uint64(binary.BigEndian.Uint16(b[:]))
		case 127:
			var b [8]byte
			if _, err := io.ReadFull(r, b[:]); err != nil {
				return nil, err
			}
			n = binary.BigEndian.Uint64(b[:])
		}
		var mask [4]byte
		masked := h[1]&0x80 != 0
		if masked {
			if _, err := io.ReadFull(r, mask[:]); err != nil {
				return nil, err
			}
		}
		if n > maxEvent || uint64(len(msg))+n > maxEvent {
			return nil, errors.New("websocket: message too large")
		}
		p := make([]byte, n)
		if _, err := io.ReadFull(r, p); err != nil {
			return nil, err
		}
		if masked {
			for i := range p {
				p[i] ^= mask[i%4]
			}
		}
		switch op {
		case 0x9: // ping
			if err := writeControl(conn, 0xA, p); err != nil {
				return nil, err
			}
		case 0xA: // pong
		case 0x8: // close
			_ = writeControl(conn, 0x8, p[:min(len(p), 2)])
			return nil, io.EOF
		case 0x0, 0x1, 0x2: // continuation, text, binary
			msg = append(msg, p...)
			if fin {
				return msg, nil
			}
		default:
			return nil, fmt.Errorf("websocket: unknown opcode %d", op)
		}
	}
}

// writeControl sends a control frame, masked as a client's must be (RFC
// 6455, 5.3). Only the reader writes, so writes never overlap.
func writeControl(conn net.Conn, op byte, p []byte) error {
	if len(p) > 125 {
		p = p[:125]
	}
	var mask [4]byte
	_, _ = rand.Read(mask[:])
	frame := append([]byte{0x80 | op, 0x80 | byte(len(p))}, mask[:]...)
	for i, b := range p {
		frame = append(frame, b^mask[i%4])
	}
	_ = conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err := conn.Write(frame)
	return err
}
