package storagewrapper

import "fmt"

// BlockSize is the length of the blocks pieces are requested in (BEP 3's
// customary 16 KiB, the largest request every client serves). The last block
// of a piece, and so every block of a piece shorter than BlockSize, may be
// shorter.
const BlockSize = 16 << 10

// MaxPieceLength bounds Info.PieceLength: a piece in flight costs one block
// state per BlockSize, and a hash failure costs the whole piece again, so a
// torrent with larger pieces is refused rather than trusted.
const MaxPieceLength = 256 << 20

// Block is one request: Length bytes at Begin inside Piece.
type Block struct {
	// Piece is the piece index.
	Piece int
	// Begin is the offset inside the piece, a multiple of BlockSize.
	Begin int64
	// Length is BlockSize, or less for the last block of a piece.
	Length int
}

func (b Block) String() string {
	return fmt.Sprintf("piece %d [%d,+%d)", b.Piece, b.Begin, b.Length)
}

// numBlocks is how many blocks a piece of plen bytes has.
func numBlocks(plen int64) int {
	return int((plen + BlockSize - 1) / BlockSize)
}

// blockOf returns block idx of piece p, whose length is plen.
func blockOf(p int, plen int64, idx int) Block {
	begin := int64(idx) * BlockSize
	return Block{Piece: p, Begin: begin, Length: int(min(BlockSize, plen-begin))}
}
