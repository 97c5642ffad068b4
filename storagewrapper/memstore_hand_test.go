package storagewrapper

import "slices"

// What another process sharing a store, or a person, does to it behind the
// wrapper's back: tests stage it on a MemStore.

// publishByHand makes data piece p's published data, as another process
// publishing it would (right or wrong).
func (s *MemStore) publishByHand(p int, data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.published[p] = slices.Clone(data)
}

// removeByHand drops piece p's published data, as an eviction by another
// process would.
func (s *MemStore) removeByHand(p int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.published, p)
}

// hasPublished reports whether piece p has published data.
func (s *MemStore) hasPublished(p int) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	_, ok := s.published[p]
	return ok
}
