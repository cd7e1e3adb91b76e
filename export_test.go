package selfservice

import "time"

// NewWithFastCourier is New with a courier that polls every 10 ms and
// retries a failed notice after 10 to 40 ms, so that tests of retries
// take milliseconds.
func NewWithFastCourier(cfg Config) (*Service, error) {
	return newService(cfg, courierTiming{
		poll: 10 * time.Millisecond, linger: time.Millisecond,
		retryMin: 10 * time.Millisecond, retryMax: 40 * time.Millisecond,
	})
}

// SealRevertToken seals token for userID's notice under secret, as a change
// does, so that benchmarks can fill an Outbox without the Service.
func SealRevertToken(secret []byte, token, userID string) ([]byte, error) {
	k, err := newSecretKey(secret)
	if err != nil {
		return nil, err
	}
	return k.seal(token, userID), nil
}

// NewRevertToken is a fresh undo token.
func NewRevertToken() string { return newRevertToken() }

// WellFormedRevertToken is the server's test of an undo token's form,
// for comparing with the OpenAPI document's pattern.
func WellFormedRevertToken(s string) bool { return wellFormedRevertToken(s) }

// MailWaiting is how many sends wait for a mail slot.
func (s *Service) MailWaiting() int64 { return s.mail.waiting.Load() }
