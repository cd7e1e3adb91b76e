package mail_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Nothing of a send may outlive it: no goroutine, no connection.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
