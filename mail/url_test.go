package mail_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ciamkit/selfservice"
	"github.com/ciamkit/selfservice/mail"
)

func TestParseURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		raw  string
		want mail.Options
	}{
		{"smtp://127.0.0.1:1025", mail.Options{Host: "127.0.0.1", Port: 1025, TLS: mail.TLSOpportunistic, From: "no-reply@127.0.0.1"}},
		{"smtp://smtp.example.com", mail.Options{Host: "smtp.example.com", TLS: mail.TLSOpportunistic, From: "no-reply@smtp.example.com"}},
		{"smtp://smtp.example.com/", mail.Options{Host: "smtp.example.com", TLS: mail.TLSOpportunistic, From: "no-reply@smtp.example.com"}},
		{"smtps://smtp.example.com", mail.Options{Host: "smtp.example.com", TLS: mail.TLSImplicit, From: "no-reply@smtp.example.com"}},
		{"smtps://mailer:s%40cr%3At@smtp.example.com:4650?from=accounts@example.com&from_name=Example+Accounts&timeout=1m30s",
			mail.Options{Host: "smtp.example.com", Port: 4650, Username: "mailer", Password: "s@cr:t", TLS: mail.TLSImplicit,
				From: "accounts@example.com", FromName: "Example Accounts", Timeout: 90 * time.Second}},
		{"smtp://user@[::1]:25?from=a@example.com", mail.Options{Host: "::1", Port: 25, Username: "user", TLS: mail.TLSOpportunistic, From: "a@example.com"}},
		{"smtp://h.example.com?tls=required", mail.Options{Host: "h.example.com", TLS: mail.TLSMandatory, From: "no-reply@h.example.com"}},
		{"smtp://h.example.com?tls=none", mail.Options{Host: "h.example.com", TLS: mail.TLSNone, From: "no-reply@h.example.com"}},
		{"smtp://h.example.com?tls=opportunistic", mail.Options{Host: "h.example.com", TLS: mail.TLSOpportunistic, From: "no-reply@h.example.com"}},
		{"smtp://h.example.com?from_name=%E7%A4%BA%E4%BE%8B", mail.Options{Host: "h.example.com", TLS: mail.TLSOpportunistic, From: "no-reply@h.example.com", FromName: "示例"}},
		{"smtp://h.example.com?revert_url=https%3A%2F%2Fapp.example.com%2Fundo%3Ffrom%3Dmail%26v%3D2",
			mail.Options{Host: "h.example.com", TLS: mail.TLSOpportunistic, From: "no-reply@h.example.com", RevertURL: "https://app.example.com/undo?from=mail&v=2"}},
		{"smtp://h.example.com?max_conns=8&idle_timeout=1m&max_messages_per_conn=50",
			mail.Options{Host: "h.example.com", TLS: mail.TLSOpportunistic, From: "no-reply@h.example.com",
				MaxConns: 8, IdleTimeout: time.Minute, MaxMessagesPerConn: 50}},
		// A URL without & or # reads the same unencoded.
		{"smtps://h.example.com?revert_url=https://app.example.com/undo&from=a@example.com",
			mail.Options{Host: "h.example.com", TLS: mail.TLSImplicit, From: "a@example.com", RevertURL: "https://app.example.com/undo"}},
	}
	for _, tt := range tests {
		t.Run(tt.raw, func(t *testing.T) {
			t.Parallel()
			got, err := mail.ParseURL(tt.raw)
			if err != nil {
				t.Fatalf("ParseURL: %v", err)
			}
			if got != tt.want {
				t.Errorf("ParseURL =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

func TestParseURLRefuses(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, raw string }{
		{"empty", ""},
		{"other scheme", "http://s3cret@smtp.example.com"},
		{"no scheme", "smtp.example.com:25"},
		{"no host", "smtp://s3cret@:25"},
		{"opaque", "smtp:smtp.example.com"},
		{"path", "smtp://smtp.example.com/mail"},
		{"fragment", "smtp://smtp.example.com#x"},
		{"port not a number", "smtp://user:s3cret@smtp.example.com:smtp"},
		{"port zero", "smtp://smtp.example.com:0"},
		{"port too large", "smtp://smtp.example.com:65536"},
		{"unknown parameter", "smtp://smtp.example.com?form=a@example.com"},
		{"repeated parameter", "smtp://smtp.example.com?from=a@example.com&from=b@example.com"},
		{"repeated revert_url", "smtp://smtp.example.com?revert_url=https%3A%2F%2Fa.example&revert_url=https%3A%2F%2Fb.example"},
		{"revert_url with its # unencoded", "smtp://smtp.example.com?revert_url=https://app.example.com/undo#x"},
		{"timeout not a duration", "smtp://smtp.example.com?timeout=10"},
		{"timeout zero", "smtp://smtp.example.com?timeout=0s"},
		{"timeout negative", "smtp://smtp.example.com?timeout=-1s"},
		{"max_conns zero", "smtp://smtp.example.com?max_conns=0"},
		{"max_conns not a number", "smtp://smtp.example.com?max_conns=four"},
		{"max_messages_per_conn negative", "smtp://smtp.example.com?max_messages_per_conn=-1"},
		{"idle_timeout not a duration", "smtp://smtp.example.com?idle_timeout=30"},
		{"idle_timeout zero", "smtp://smtp.example.com?idle_timeout=0s"},
		{"tls unknown", "smtp://smtp.example.com?tls=yes"},
		{"tls with smtps", "smtps://smtp.example.com?tls=none"},
		{"bad query", "smtp://smtp.example.com?from=%zz"},
		{"bad escape in password", "smtp://user:s3cret%zz@smtp.example.com"},
		{"control character", "smtp://user:s3cret@smtp.example.com\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			opts, err := mail.ParseURL(tt.raw)
			if !errors.Is(err, selfservice.ErrConfig) {
				t.Fatalf("ParseURL(%q) = %+v, %v; want an error wrapping ErrConfig", tt.raw, opts, err)
			}
			if opts != (mail.Options{}) {
				t.Errorf("ParseURL returned options %+v with its error", opts)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error %q shows the password", err)
			}
		})
	}
}

// What ParseURL accepts, New may still refuse: ParseURL checks the form.
func TestParseURLThenNew(t *testing.T) {
	t.Parallel()
	for raw, ok := range map[string]bool{
		"smtp://127.0.0.1:1025":                                                        true,
		"smtps://u:p@smtp.example.com?from=a@b.example":                                true,
		"smtp://smtp.example.com?from=not-an-address":                                  false,
		"smtp://u@smtp.example.com":                                                    false, // a username without a password
		"smtp://smtp.example.com?from_name=A%0D%0ABcc:":                                false,
		"smtp://smtp.example.com?revert_url=https%3A%2F%2Fapp.example.com%2Fundo":      true,
		"smtp://smtp.example.com?revert_url=http%3A%2F%2F127.0.0.1%3A8080%2Fundo":      true,
		"smtp://smtp.example.com?revert_url=http%3A%2F%2Fapp.example.com%2Fundo":       false, // http to a host that is not loopback
		"smtp://smtp.example.com?revert_url=https%3A%2F%2Fapp.example.com%2Fundo%23x":  false, // a fragment
		"smtp://smtp.example.com?revert_url=%2Fundo":                                   false, // relative
		"smtp://smtp.example.com?revert_url=https%3A%2F%2Fu%3Ap%40app.example.com%2Fu": false, // user information
	} {
		opts, err := mail.ParseURL(raw)
		if err != nil {
			t.Errorf("ParseURL(%q): %v", raw, err)
			continue
		}
		if _, err := mail.New(opts); (err == nil) != ok {
			t.Errorf("New(ParseURL(%q)) error = %v, want success %v", raw, err, ok)
		}
	}
}
