package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/ciamkit/selfservice/store"
)

var _ store.ClientRegistry = (*ClientRegistry)(nil)

// ClientRegistry is a store.ClientRegistry over the selfservice_clients
// table: id, name, and the issuer and jwks_url of a client that signs in
// through an issuer of its own (empty strings otherwise; schema version 3).
type ClientRegistry struct {
	db                         *sql.DB
	selectClient, insertClient string
}

// NewClientRegistry returns a registry over db, a database the application
// opened for dialect d and brought up to date with Migrate.
//
// Panics if db is nil or d is neither Postgres nor SQLite.
func NewClientRegistry(db *sql.DB, d Dialect) *ClientRegistry {
	mustOpen("NewClientRegistry", db, d)
	return &ClientRegistry{
		db:           db,
		selectClient: d.query(`SELECT name, issuer, jwks_url FROM selfservice_clients WHERE id = $1`),
		insertClient: d.query(`INSERT INTO selfservice_clients (id, name, issuer, jwks_url)
			VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING`),
	}
}

// Client implements store.ClientRegistry.
func (r *ClientRegistry) Client(ctx context.Context, id string) (store.Client, error) {
	c := store.Client{ID: id}
	err := r.db.QueryRowContext(ctx, r.selectClient, id).Scan(&c.Name, &c.Issuer, &c.JWKSURL)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Client{}, fmt.Errorf("sqlstore: client %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.Client{}, fmt.Errorf("sqlstore: client %q: %w", id, err)
	}
	return c, nil
}

// CreateClient registers c. It returns an error wrapping
// store.ErrAlreadyExists if the id is taken, changing nothing, and an error
// if c has an Issuer without a JWKSURL or the other way round (the table's
// CHECK refuses such a row too).
func (r *ClientRegistry) CreateClient(ctx context.Context, c store.Client) error {
	if (c.Issuer == "") != (c.JWKSURL == "") {
		return fmt.Errorf("sqlstore: create client %q: Issuer and JWKSURL go together", c.ID)
	}
	res, err := r.db.ExecContext(ctx, r.insertClient, c.ID, c.Name, c.Issuer, c.JWKSURL)
	if err != nil {
		return fmt.Errorf("sqlstore: create client %q: %w", c.ID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("sqlstore: create client %q: %w", c.ID, err)
	}
	if n == 0 {
		return fmt.Errorf("sqlstore: create client %q: %w", c.ID, store.ErrAlreadyExists)
	}
	return nil
}
