package metainfo

import (
	"errors"
	"path"
	"strconv"
	"strings"
)

// checkComponent rejects a path component (or torrent name) that could
// name something outside the torrent's directory or that no file system
// can hold. Such a torrent is an error rather than silently repaired: the
// user should learn that the file is hostile or broken.
func checkComponent(c string) error {
	switch {
	case c == "":
		return errors.New("empty component")
	case c == ".":
		return errors.New(`component "." is not a name`)
	case c == "..":
		return errors.New(`component ".." escapes the torrent`)
	case strings.HasPrefix(c, "/"):
		return errors.New("component " + quoteShort([]byte(c)) + " is an absolute path")
	case strings.ContainsRune(c, '/'):
		return errors.New("component " + quoteShort([]byte(c)) + ` contains "/"`)
	case strings.ContainsRune(c, '\\'):
		return errors.New("component " + quoteShort([]byte(c)) + ` contains "\"`)
	case strings.ContainsRune(c, 0):
		return errors.New("component " + quoteShort([]byte(c)) + " contains NUL")
	}
	return nil
}

// dedupePaths makes the paths of a multi-file torrent distinct so that they
// form a tree: no two files at one path, and no file where another file
// needs a directory. It rewrites File.Path in place.
//
// The rule is deterministic: files claim their paths in torrent order and
// the later claimant is renamed, with " (1)", " (2)", ... inserted before
// the extension ("a.txt" → "a (1).txt"). When a file already holds the name
// that a later file needs as a directory, the directory is renamed the same
// way, and every later file under that directory follows it. Regular files
// claim their names before BEP 47 padding files, so padding (which the
// mount hides, and which libtorrent names ".pad/<size>", repeating names)
// never pushes a real file aside.
func dedupePaths(files []File) {
	root := newNameDir()
	for pass := 0; pass < 2; pass++ {
		for i := range files {
			if files[i].Padding == (pass == 0) {
				continue
			}
			files[i].Path = root.place(files[i].Path)
		}
	}
}

// nameDir is one directory while paths are being placed.
type nameDir struct {
	// taken maps a name in this directory to its subdirectory, or to nil
	// when a file holds the name.
	taken map[string]*nameDir
	// moved maps a directory name of the torrent to the name it got here
	// because a file held it first.
	moved map[string]string
	// next is the next suffix number to try for a base name, so that n
	// copies of one name cost O(n), not O(n²).
	next map[string]int
}

func newNameDir() *nameDir {
	return &nameDir{taken: map[string]*nameDir{}, moved: map[string]string{}, next: map[string]int{}}
}

// place claims p (a safe, non-empty path) and returns it, or a renamed copy
// when part of it was taken.
func (d *nameDir) place(p []string) []string {
	out := p
	rename := func(i int, name string) {
		if &out[0] == &p[0] {
			out = append([]string(nil), p...)
		}
		out[i] = name
	}
	cur := d
	last := len(p) - 1
	for i, c := range p[:last] {
		if m, ok := cur.moved[c]; ok {
			rename(i, m)
			c = m
		}
		sub, ok := cur.taken[c]
		switch {
		case ok && sub != nil:
		case !ok:
			sub = newNameDir()
			cur.taken[c] = sub
		default: // a file holds the name: move this directory aside
			m := cur.unique(c)
			cur.moved[c] = m
			rename(i, m)
			sub = newNameDir()
			cur.taken[m] = sub
		}
		cur = sub
	}
	c := p[last]
	if _, ok := cur.taken[c]; ok {
		c = cur.unique(c)
		rename(last, c)
	}
	cur.taken[c] = nil
	return out
}

// unique returns the first free name "base (k).ext".
func (d *nameDir) unique(name string) string {
	ext := path.Ext(name)
	if ext == name {
		ext = "" // ".bashrc" is a name, not an extension
	}
	base := name[:len(name)-len(ext)]
	for k := max(d.next[name], 1); ; k++ {
		u := base + " (" + strconv.Itoa(k) + ")" + ext
		if _, ok := d.taken[u]; !ok {
			d.next[name] = k + 1
			return u
		}
	}
}
