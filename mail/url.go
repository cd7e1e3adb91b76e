package mail

import (
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/ciamkit/selfservice/internal/configerr"
)

// ParseURL returns the Options that a mail URL describes, for a flag or an
// environment variable:
//
//	smtp://[user:password@]host[:port][?query]   STARTTLS when the server offers it (TLSOpportunistic), port 587 by default
//	smtps://[user:password@]host[:port][?query]  implicit TLS (TLSImplicit), port 465 by default
//
// The user and password are URL-decoded. The query may hold, each once:
//
//	from=no-reply@example.com   Options.From; default no-reply@<host>, which suits a test server only
//	from_name=Example+Accounts  Options.FromName
//	timeout=10s                 Options.Timeout, a positive time.ParseDuration value
//	tls=required                smtp only: TLSMandatory (STARTTLS or fail); tls=none: TLSNone;
//	                            tls=opportunistic: the default
//	revert_url=https%3A%2F%2Fapp.example.com%2Fundo-email
//	                            Options.RevertURL, URL-encoded: the undo page linked from notices
//	max_conns=4                 Options.MaxConns, a positive integer
//	idle_timeout=30s            Options.IdleTimeout, a positive time.ParseDuration value
//	max_messages_per_conn=100   Options.MaxMessagesPerConn, a positive integer
//
// Anything else is an error. ParseURL checks the URL's form only: pass the
// result to New, which validates it. Errors wrap selfservice.ErrConfig and
// never quote the password.
func ParseURL(raw string) (Options, error) {
	u, err := url.Parse(raw)
	if err != nil {
		// url's error quotes the URL, password included.
		return Options{}, fmt.Errorf("%w: mail URL does not parse", configerr.Err)
	}
	var opts Options
	switch u.Scheme {
	case "smtp":
		opts.TLS = TLSOpportunistic
	case "smtps":
		opts.TLS = TLSImplicit
	default:
		return Options{}, fmt.Errorf("%w: mail URL scheme must be smtp or smtps", configerr.Err)
	}
	if u.Opaque != "" || u.Hostname() == "" {
		return Options{}, fmt.Errorf("%w: mail URL has no host", configerr.Err)
	}
	if (u.Path != "" && u.Path != "/") || u.Fragment != "" {
		return Options{}, fmt.Errorf("%w: mail URL must not have a path or a fragment", configerr.Err)
	}
	opts.Host = u.Hostname()
	if p := u.Port(); p != "" {
		port, err := strconv.Atoi(p)
		if err != nil || port < 1 || port > 65535 {
			return Options{}, fmt.Errorf("%w: mail URL port is out of range", configerr.Err)
		}
		opts.Port = port
	}
	if u.User != nil {
		opts.Username = u.User.Username()
		opts.Password, _ = u.User.Password()
	}
	query, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return Options{}, fmt.Errorf("%w: mail URL query does not parse", configerr.Err)
	}
	for key, values := range query {
		if len(values) != 1 {
			return Options{}, fmt.Errorf("%w: mail URL parameter %q is repeated", configerr.Err, key)
		}
		v := values[0]
		switch key {
		case "from":
			opts.From = v
		case "from_name":
			opts.FromName = v
		case "revert_url":
			opts.RevertURL = v
		case "timeout", "idle_timeout":
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return Options{}, fmt.Errorf("%w: mail URL %s must be a positive duration such as 10s", configerr.Err, key)
			}
			if key == "timeout" {
				opts.Timeout = d
			} else {
				opts.IdleTimeout = d
			}
		case "max_conns", "max_messages_per_conn":
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				return Options{}, fmt.Errorf("%w: mail URL %s must be a positive integer", configerr.Err, key)
			}
			if key == "max_conns" {
				opts.MaxConns = n
			} else {
				opts.MaxMessagesPerConn = n
			}
		case "tls":
			switch {
			case u.Scheme != "smtp":
				return Options{}, fmt.Errorf("%w: mail URL parameter tls is for smtp:// only", configerr.Err)
			case v == "required":
				opts.TLS = TLSMandatory
			case v == "opportunistic":
				opts.TLS = TLSOpportunistic
			case v == "none":
				opts.TLS = TLSNone
			default:
				return Options{}, fmt.Errorf("%w: mail URL tls must be required, opportunistic or none", configerr.Err)
			}
		default:
			return Options{}, fmt.Errorf("%w: unknown mail URL parameter %q", configerr.Err, key)
		}
	}
	if opts.From == "" {
		opts.From = "no-reply@" + opts.Host
	}
	return opts, nil
}
