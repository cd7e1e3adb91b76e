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
// table.
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
		selectClient: d.query(`SELECT name FROM selfservice_clients WHERE id = $1`),
		insertClient: d.query(`INSERT INTO selfservice_clients (id, name)
			VALUES ($1, $2) ON CONFLICT (id) DO NOTHING`),
	}
}

// Client implements store.ClientRegistry.
func (r *ClientRegistry) Client(ctx context.Context, id string) (store.Client, error) {
	c := store.Client{ID: id}
	err := r.db.QueryRowContext(ctx, r.selectClient, id).Scan(&c.Name)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Client{}, fmt.Errorf("sqlstore: client %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.Client{}, fmt.Errorf("sqlstore: client %q: %w", id, err)
	}
	return c, nil
}

// CreateClient registers c. It returns an error wrapping
// store.ErrAlreadyExists if the id is taken, changing nothing.
func (r *ClientRegistry) CreateClient(ctx context.Context, c store.Client) error {
	res, err := r.db.ExecContext(ctx, r.insertClient, c.ID, c.Name)
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
