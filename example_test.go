package selfservice_test

import (
	"crypto/rand"
	"fmt"
	"log"
	"net/http"

	"github.com/ciamkit/selfservice"
	"github.com/ciamkit/selfservice/i18n"
	"github.com/ciamkit/selfservice/middleware"
	"github.com/ciamkit/selfservice/store"
	"github.com/ciamkit/selfservice/store/memstore"
)

func ExampleCanonicalEmail() {
	email, canonical, err := selfservice.CanonicalEmail("  Jose.Smith@Bücher.Example ")
	fmt.Println(email, canonical, err)

	_, _, err = selfservice.CanonicalEmail("Jose <jose@example.com>")
	fmt.Println(err != nil)
	// Output:
	// Jose.Smith@Bücher.Example jose.smith@xn--bcher-kva.example <nil>
	// true
}

// Mount puts both endpoints, behind the four middlewares, on an existing mux.
func ExampleMount() {
	verifier, err := middleware.NewVerifier(middleware.VerifierOptions{
		Issuer:  "https://id.example.com",
		JWKSURL: "https://id.example.com/api/v1/oauth2/keys",
	})
	if err != nil {
		log.Fatal(err)
	}
	defer verifier.Close()

	secret := make([]byte, selfservice.MinCodeSecretLen) // in production: from your secret store
	_, _ = rand.Read(secret)

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {})
	_, err = selfservice.Mount(mux, selfservice.Config{
		Users:      memstore.NewUserStore(),
		Codes:      memstore.NewCodeStore(),
		Limiter:    memstore.NewLimiter(),
		Clients:    memstore.NewClientRegistry(store.Client{ID: "my-app"}),
		Verifier:   verifier,
		Mailer:     selfservice.NewLogMailer(log.Writer()),
		Captcha:    selfservice.AllowAllCaptcha,
		CodeSecret: secret,
	})
	if err != nil {
		log.Fatal(err)
	}
	log.Fatal(http.ListenAndServe("127.0.0.1:8080", mux))
}

// A framework that routes by itself wraps the handlers in the middlewares
// it wants, in the standard order.
func ExampleService_UpdateEmail() {
	var (
		svc      *selfservice.Service // from selfservice.New
		verifier *middleware.Verifier // from middleware.NewVerifier
		clients  store.ClientRegistry
	)
	chain := func(h http.Handler) http.Handler {
		return middleware.Localize(i18n.Default())(middleware.DeviceHeaders(middleware.RequireClientID(clients, nil)(h)))
	}
	http.Handle("POST "+selfservice.UpdateEmailPath, chain(middleware.RequireBearer(verifier)(svc.UpdateEmail())))
	http.Handle("POST "+selfservice.SendCodePath, chain(svc.SendCode()))
}
