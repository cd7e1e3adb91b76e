package mail

// Sessions returns how many sessions m holds open and how many of those
// are idle, waiting for a mail.
func Sessions(m *SMTPMailer) (open, idle int) {
	m.pool.mu.Lock()
	defer m.pool.mu.Unlock()
	return len(m.pool.conns), len(m.pool.idle)
}
