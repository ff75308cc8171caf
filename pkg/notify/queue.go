package notify

// queueBlock is how many items one block of the queue holds: 16 of 400
// bytes. An idle notifier keeps one block.
const queueBlock = 16

// queue is the notifier's FIFO of events, in blocks of queueBlock items.
// A burst queues without moving what is already queued, and its memory is
// given back block by block as it is delivered: the slice it replaces,
// grown by append a quarter at a time, was copied and cleared about ten
// times over while a burst of 10,000 events queued, a third of the
// sidecar's CPU per burst event (issue 15). The Notifier's mu guards it.
type queue struct {
	blocks []*[queueBlock]item // the front is blocks[0][head]
	head   int
	n      int
	spare  *[queueBlock]item // an emptied block, for the next one needed
}

func (q *queue) len() int { return q.n }

// at returns the i-th item from the front, 0 ≤ i < len.
func (q *queue) at(i int) *item {
	i += q.head
	return &q.blocks[i/queueBlock][i%queueBlock]
}

// push adds it at the back.
func (q *queue) push(it item) {
	if q.head+q.n == len(q.blocks)*queueBlock {
		b := q.spare
		if b == nil {
			b = new([queueBlock]item)
		}
		q.spare = nil
		q.blocks = append(q.blocks, b)
	}
	*q.at(q.n) = it
	q.n++
}

// pop removes the front item and returns it; len must be > 0.
func (q *queue) pop() item {
	b := q.blocks[0]
	it := b[q.head]
	b[q.head] = item{} // let the event's strings and map go
	q.head++
	q.n--
	if q.head == queueBlock {
		// The front block is empty (every item was cleared as it left):
		// keep it as the spare, and let the blocks after it move up.
		k := copy(q.blocks, q.blocks[1:])
		q.blocks[k] = nil
		q.blocks = q.blocks[:k]
		q.head, q.spare = 0, b
	}
	if q.n == 0 {
		q.head = 0
	}
	return it
}
