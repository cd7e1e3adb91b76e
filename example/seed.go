package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/ciamkit/selfservice"
	"github.com/ciamkit/selfservice/store"
)

// seedData is the -seed file: {"clients":[{"client_id":"..."}],
// "users":[{"id":"...","email":"...","language":"zh"}]}. A user's id is its
// tokens' sub.
type seedData struct {
	Clients []struct {
		ClientID string `json:"client_id"`
		Name     string `json:"name,omitempty"`
	} `json:"clients"`
	Users []struct {
		ID    string `json:"id"`
		Email string `json:"email"`
		// Language (BCP 47) is the language of the user's notices; empty:
		// every language.
		Language string `json:"language,omitempty"`
	} `json:"users"`
}

var defaultSeed = func() seedData {
	var s seedData
	// The seed page's example client id and address.
	if err := json.Unmarshal([]byte(`{
		"clients": [{"client_id": "nTo1eRIub60vPb54WeE6aojPwYwImtl4", "name": "demo"}],
		"users":   [{"id": "demo-user", "email": "15201657312@163.com"}]
	}`), &s); err != nil {
		panic(err)
	}
	return s
}()

func readSeed(path string) (seedData, error) {
	var s seedData
	b, err := os.ReadFile(path)
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("seed %s: %w", path, err)
	}
	return s, nil
}

// userCreator and clientCreator are what seeding needs from the stores:
// their create methods, which the store interfaces leave out, and reading a
// user back (see seedUser).
type userCreator interface {
	CreateUser(context.Context, store.User) error
	User(ctx context.Context, id string) (store.User, error)
}

type clientCreator interface {
	CreateClient(context.Context, store.Client) error
}

// apply inserts the clients and users that are missing and leaves existing
// ones as they are. Replicas that start together on one database all apply
// the same seed at once, so every insert may meet another replica's.
func (s seedData) apply(ctx context.Context, users userCreator, clients clientCreator) error {
	for _, c := range s.Clients {
		if c.ClientID == "" {
			return errors.New("seed: a client has no client_id")
		}
		err := clients.CreateClient(ctx, store.Client{ID: c.ClientID, Name: c.Name})
		if err != nil && !errors.Is(err, store.ErrAlreadyExists) {
			return fmt.Errorf("seed client %q: %w", c.ClientID, err)
		}
	}
	for _, u := range s.Users {
		if u.ID == "" {
			return errors.New("seed: a user has no id")
		}
		nu := store.User{ID: u.ID, Language: u.Language}
		if u.Email != "" {
			email, canonical, err := selfservice.CanonicalEmail(u.Email)
			if err != nil {
				return fmt.Errorf("seed user %q: email breaks the address rules", u.ID)
			}
			nu.Email, nu.CanonicalEmail = email, canonical
		}
		if err := seedUser(ctx, users, nu); err != nil {
			return fmt.Errorf("seed user %q: %w", u.ID, err)
		}
	}
	return nil
}

// seedUser creates u unless a user with its id is there already. Two
// replicas inserting the same user at once can both find its id free, and
// then the later insert fails on the address the earlier one just took
// (ErrEmailExists, not ErrAlreadyExists): when the user now read back by id
// holds that very address, it is the same user and already there. Another
// user holding the address stays an error, as when a seed file gives two
// users one address.
func seedUser(ctx context.Context, users userCreator, u store.User) error {
	err := users.CreateUser(ctx, u)
	switch {
	case err == nil, errors.Is(err, store.ErrAlreadyExists):
		return nil
	case !errors.Is(err, store.ErrEmailExists):
		return err
	}
	got, rerr := users.User(ctx, u.ID)
	switch {
	case rerr == nil && got.CanonicalEmail == u.CanonicalEmail:
		return nil
	case rerr != nil && !errors.Is(rerr, store.ErrNotFound):
		return errors.Join(err, rerr)
	}
	return err
}
