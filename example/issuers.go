package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/ciamkit/selfservice"
	"github.com/ciamkit/selfservice/idtoken"
	"github.com/ciamkit/selfservice/internal/devissuer"
	"github.com/ciamkit/selfservice/store"
)

// -second-issuer: a second built-in issuer, its iss base+secondIssuerPath
// and its keys under that path, and the application secondClientID whose
// users sign in through it.
const (
	secondIssuerPath = "/second-issuer"
	secondClientID   = "second-issuer-demo-app"
)

// secondIssuer is -second-issuer's issuer, and what the Service checks
// tokens and looks clients up with once it runs.
type secondIssuer struct {
	iss     *devissuer.Issuer
	clients store.ClientRegistry
	tokens  *idtoken.Issuers
}

// newSecondIssuer serves a second built-in issuer on mux, with a key of its
// own, registers secondClientID bound to it, and returns an idtoken.Issuers
// that takes def over as the Verifier of every other client. The client
// lives in this process only, like the issuer's key: a registration kept
// in a SQL store would name the JWKS URL, and so the port, of an earlier
// run.
func newSecondIssuer(mux *http.ServeMux, base string, clients store.ClientRegistry, def *idtoken.Verifier,
	logger *slog.Logger, meters metric.MeterProvider) (*secondIssuer, error) {
	iss, err := devissuer.New(base + secondIssuerPath)
	if err != nil {
		return nil, err
	}
	mux.Handle("GET "+secondIssuerPath+jwksPath, iss)
	reg := plusClient{ClientRegistry: clients, client: store.Client{
		ID: secondClientID, Name: "second issuer demo", Issuer: iss.URL(), JWKSURL: base + secondIssuerPath + jwksPath,
	}}
	tokens, err := idtoken.NewIssuers(idtoken.IssuersOptions{
		Clients: reg,
		Default: def,
		Options: idtoken.Options{Logger: logger, MeterProvider: meters},
		// Both issuers are this process's own and sign in the same users.
		// Issuers of tenants that are not yours keep the default, under
		// which each issuer's users have ids of their own.
		SharedSubjects: true,
	})
	if err != nil {
		return nil, err
	}
	return &secondIssuer{iss: iss, clients: reg, tokens: tokens}, nil
}

// plusClient is a registry holding one client besides the store's.
type plusClient struct {
	store.ClientRegistry
	client store.Client
}

// Client implements store.ClientRegistry.
func (r plusClient) Client(ctx context.Context, id string) (store.Client, error) {
	if id == r.client.ID {
		return r.client, nil
	}
	return r.ClientRegistry.Client(ctx, id)
}

// print prints a token of the second issuer for userID and how it differs
// from the walkthrough's.
func (s *secondIssuer) print(w io.Writer, base, userID string) error {
	token, err := s.iss.IDToken(userID, secondClientID, 24*time.Hour)
	if err != nil {
		return err
	}
	headers := fmt.Sprintf(`-H 'Content-Type: application/json' -H 'X-operating-sys-version: linux6.1' -H 'X-device-fingerprint: demo-device-1' -H 'X-agent: curl' -H 'X-L: en' -H 'X-client-id: %s'`, secondClientID)
	fmt.Fprintf(w, `-second-issuer: a second issuer, %s, signs in the application %s.
A demo id_token (valid 24h) of it for the same user:

  export SECOND_TOKEN=%s

It passes with X-client-id: %s only, and $TOKEN with the demo client only (IDAAS.SDK.PARAM.0016 otherwise):

  curl -i -X POST %s%s %s -H "Authorization: Bearer $SECOND_TOKEN" -d '{"email":"new.address@example.com","verify_code":"123456"}'

`, s.iss.URL(), secondClientID, token, secondClientID, base, selfservice.UpdateEmailPath, headers)
	return nil
}
