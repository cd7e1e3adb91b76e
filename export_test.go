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
