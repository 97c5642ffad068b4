package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"btfs/bitfield"
	"btfs/cache"
	"btfs/metainfo"
	"btfs/storagewrapper"
)

// keepFiles writes every file whose pieces are all verified (bf) from the
// torrent's cache directory cacheDir into dst, laid out as the torrent says (like
// johang/btfs --keep). Incomplete files are skipped and named in the log.
// Each file appears by rename only once complete.
func keepFiles(mi *metainfo.MetaInfo, cacheDir string, bf *bitfield.Bitfield, dst string, log *slog.Logger) error {
	store, err := storagewrapper.NewFileStore(cache.DataDir(cacheDir), mi.Info, true)
	if err != nil {
		return err
	}
	defer store.Close()
	info := mi.Info
	for i, f := range info.Files {
		if f.Padding {
			continue
		}
		rel := info.Name
		if info.MultiFile {
			rel = filepath.Join(append([]string{info.Name}, f.Path...)...)
		}
		first, end := info.FileRange(i)
		complete := true
		for p := first; p < end; p++ {
			if !bf.Has(p) {
				complete = false
				break
			}
		}
		if !complete {
			log.Info("not keeping an incomplete file", "file", rel)
			continue
		}
		if err := copyFile(store, info, f, filepath.Join(dst, rel)); err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		log.Info("kept", "file", filepath.Join(dst, rel))
	}
	return nil
}

// copyFile writes file f's bytes from the store to path.
func copyFile(store storagewrapper.Store, info *metainfo.Info, f metainfo.File, path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".btfs-keep-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	buf := make([]byte, 1<<20)
	for off := f.Offset; off < f.Offset+f.Length; {
		p := int(off / info.PieceLength)
		inPiece := off - info.PieceOffset(p)
		n := min(int64(len(buf)), info.PieceLen(p)-inPiece, f.Offset+f.Length-off)
		if _, err := store.Piece(p).ReadAt(buf[:n], inPiece); err != nil && err != io.EOF {
			tmp.Close()
			return err
		}
		if _, err := tmp.Write(buf[:n]); err != nil {
			tmp.Close()
			return err
		}
		off += n
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
