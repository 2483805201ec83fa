package vault

// SetBatchHooks sets a BatchSigner's test hooks before its first Sign:
// encode replaces the base64 encoding of batch inputs (nil keeps it),
// beforeBatch runs in the sending goroutine before each batch is taken
// from the queue (nil: none).
func SetBatchHooks(b *BatchSigner, encode func([]byte) string, beforeBatch func()) {
	if encode != nil {
		b.encode = encode
	}
	b.beforeBatch = beforeBatch
}

// Pending is the number of messages queued and not yet taken into a
// batch.
func (b *BatchSigner) Pending() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.queue)
}

// Senders is the number of sending goroutines running.
func (b *BatchSigner) Senders() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.inFlight
}
