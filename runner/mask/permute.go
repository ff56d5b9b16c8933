package mask

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"hash"
)

// permutation is a keyed one-to-one map of the integers of bits bits
// onto themselves (a Feistel network, whose rounds are keyed hashes): a
// masked key is as unique as the key it replaces, and a foreign key over
// it masks to the same value.
type permutation struct {
	bits   int
	rounds [4]hash.Hash // keyed by the round's key; not for concurrent use
	buf    []byte
}

func newPermutation(key []byte, salt string, bits int) *permutation {
	p := &permutation{bits: bits}
	for i := range p.rounds {
		m := hmac.New(sha256.New, key)
		m.Write([]byte(salt))
		m.Write([]byte{0, 'i', byte(bits), byte(i)})
		p.rounds[i] = hmac.New(sha256.New, m.Sum(nil))
	}
	return p
}

// apply maps n, read as a bits-bit two's complement integer, to another.
func (p *permutation) apply(n int64) int64 {
	half := uint(p.bits / 2)
	mask := uint64(1)<<half - 1
	u := uint64(n)
	if p.bits < 64 {
		u &= uint64(1)<<uint(p.bits) - 1
	}
	l, r := u>>half&mask, u&mask
	for _, k := range p.rounds {
		l, r = r, l^(p.round(k, r)&mask)
	}
	out := l<<half | r
	// Back to a signed integer of the column's width.
	shift := 64 - uint(p.bits)
	return int64(out<<shift) >> shift
}

func (p *permutation) round(m hash.Hash, r uint64) uint64 {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], r)
	m.Reset()
	m.Write(b[:])
	p.buf = m.Sum(p.buf[:0])
	return binary.BigEndian.Uint64(p.buf)
}
