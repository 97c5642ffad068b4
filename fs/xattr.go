package fs

import (
	"context"
	"strconv"
	"syscall"
)

// Extended attributes for people and scripts, in the user namespace so that
// `getfattr -d FILE` shows them:
//
//	user.btfs.infohash   the torrent's info-hash, hex (every node)
//	user.btfs.progress   verified bytes / size: of the file; of the files
//	                     below a directory; of the whole torrent at the root
//	user.btfs.pieces     the piece map of the file's pieces (torrent-wide at
//	                     the root): '#' verified, '.' missing, one character
//	                     a piece; a long map shows runs of pieces per
//	                     character, ':' for a run partly verified
//
// The values are computed on every call from a copy of the verified set, so
// a script polling progress sees the download move. A piece shared with a
// neighbouring file counts only for its bytes inside the file.
const (
	xattrInfohash = "user.btfs.infohash"
	xattrProgress = "user.btfs.progress"
	xattrPieces   = "user.btfs.pieces"
)

// xattr is one attribute: its name and how to compute its value.
type xattr struct {
	// name is the full name, namespace included.
	name string
	// value computes the value now.
	value func() string
}

// Getxattr returns one attribute of the file.
func (f *fileNode) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	return getxattr(f.xattrs(), attr, dest)
}

// Listxattr lists the file's attributes.
func (f *fileNode) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	return listxattr(f.xattrs(), dest)
}

// Getxattr returns one attribute of the directory.
func (d *dirNode) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	return getxattr(d.xattrs(), attr, dest)
}

// Listxattr lists the directory's attributes.
func (d *dirNode) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	return listxattr(d.xattrs(), dest)
}

// xattrs are a file's attributes.
func (f *fileNode) xattrs() []xattr {
	m := f.m
	return []xattr{
		{xattrInfohash, m.infohash},
		{xattrProgress, func() string {
			got := verifiedBytes(m.t.Bitfield(), m.info, f.offset, f.offset+f.length)
			return progress(got, f.length)
		}},
		{xattrPieces, func() string {
			first, last := m.info.PiecesFor(f.offset, f.length)
			return pieceMap(m.t.Bitfield(), first, last)
		}},
	}
}

// xattrs are a directory's attributes; the root's are torrent-wide.
func (d *dirNode) xattrs() []xattr {
	m := d.m
	if d.root && !m.isReady() {
		return []xattr{{xattrInfohash, m.infohash}}
	}
	if d.root {
		return []xattr{
			{xattrInfohash, m.infohash},
			{xattrProgress, func() string {
				got := verifiedBytes(m.t.Bitfield(), m.info, 0, m.info.TotalLength)
				return progress(got, m.info.TotalLength)
			}},
			{xattrPieces, func() string {
				return pieceMap(m.t.Bitfield(), 0, m.info.NumPieces())
			}},
		}
	}
	return []xattr{
		{xattrInfohash, m.infohash},
		{xattrProgress, func() string {
			bf := m.t.Bitfield()
			var got, size int64
			for _, i := range d.files {
				f := m.info.Files[i]
				got += verifiedBytes(bf, m.info, f.Offset, f.Offset+f.Length)
				size += f.Length
			}
			return progress(got, size)
		}},
	}
}

// infohash is the value of user.btfs.infohash.
func (m *mountState) infohash() string { return m.ih.String() }

// progress formats "verified/size".
func progress(got, size int64) string {
	return strconv.FormatInt(got, 10) + "/" + strconv.FormatInt(size, 10)
}

// getxattr answers getxattr(2) from list: the value's size for a size
// query (an empty dest), ERANGE when dest is too small, ENODATA (ENOATTR) for a name
// not in the list.
func getxattr(list []xattr, name string, dest []byte) (uint32, syscall.Errno) {
	for _, a := range list {
		if a.name == name {
			return fill(dest, []byte(a.value()))
		}
	}
	return 0, syscall.ENODATA
}

// listxattr answers listxattr(2) from list: the names, each NUL-terminated.
func listxattr(list []xattr, dest []byte) (uint32, syscall.Errno) {
	var names []byte
	for _, a := range list {
		names = append(append(names, a.name...), 0)
	}
	return fill(dest, names)
}

// fill copies value into dest with the size conventions of the xattr calls.
func fill(dest, value []byte) (uint32, syscall.Errno) {
	switch {
	case len(dest) == 0:
		return uint32(len(value)), 0
	case len(dest) < len(value):
		return uint32(len(value)), syscall.ERANGE
	}
	return uint32(copy(dest, value)), 0
}
