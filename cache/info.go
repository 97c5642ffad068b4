package cache

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// InfoName is the file of a torrent's directory that holds its info
// dictionary (bencoded, exactly the bytes the info-hash covers), so that a
// later mount, or a magnet link, starts without the network.
const InfoName = "info"

// infoTempPrefix begins the temp file SaveInfo renames into place; Open
// removes old ones.
const infoTempPrefix = ".info-"

// SaveInfo writes info (the raw info dictionary) into dir/info unless it is
// there already with these bytes. The file appears by an atomic rename of
// a complete, fsynced temp file, so processes saving at once and a crash
// midway both leave a whole file.
func SaveInfo(dir string, info []byte) error {
	path := filepath.Join(dir, InfoName)
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, info) {
		return nil
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("cache: %w", err)
	}
	tmp, err := os.CreateTemp(dir, infoTempPrefix+"*")
	if err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	_, err = tmp.Write(info)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("cache: save %s: %w", path, err)
	}
	return nil
}

// maxInfoSize caps LoadInfo: BEP 9's metadata is fetched under a 16 MiB
// cap, so a bigger file was not written by SaveInfo.
const maxInfoSize = 16 << 20

// LoadInfo reads the info dictionary SaveInfo kept in dir. A missing file
// is fs.ErrNotExist; the caller checks the bytes against the info-hash.
func LoadInfo(dir string) ([]byte, error) {
	f, err := os.Open(filepath.Join(dir, InfoName))
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxInfoSize+1))
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	if len(data) > maxInfoSize {
		return nil, fmt.Errorf("cache: %s is larger than %d bytes", f.Name(), maxInfoSize)
	}
	return data, nil
}
