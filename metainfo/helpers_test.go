package metainfo

import (
	"crypto/sha1"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"btfs/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

// kv is one dictionary entry of a test fixture; a dict keeps its entries in
// the order written, so fixtures can be non-canonical on purpose.
type kv struct {
	k string
	v any
}

type dict []kv

// enc bencodes a fixture: int, int64, string, []byte, []any, []string,
// dict. It is the tests' own encoder, independent of the code under test.
func enc(v any) []byte {
	var b strings.Builder
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case int:
			b.WriteString("i" + strconv.Itoa(v) + "e")
		case int64:
			b.WriteString("i" + strconv.FormatInt(v, 10) + "e")
		case string:
			b.WriteString(strconv.Itoa(len(v)) + ":" + v)
		case []byte:
			b.WriteString(strconv.Itoa(len(v)) + ":" + string(v))
		case []string:
			b.WriteString("l")
			for _, s := range v {
				walk(s)
			}
			b.WriteString("e")
		case []any:
			b.WriteString("l")
			for _, e := range v {
				walk(e)
			}
			b.WriteString("e")
		case dict:
			b.WriteString("d")
			for _, e := range v {
				walk(e.k)
				walk(e.v)
			}
			b.WriteString("e")
		case raw:
			b.WriteString(string(v))
		default:
			panic(fmt.Sprintf("enc: %T", v))
		}
	}
	walk(v)
	return []byte(b.String())
}

// raw is spliced into a fixture as is (for malformed parts).
type raw string

// hashes returns the piece hashes of data cut into pieces of pl bytes.
func hashes(data []byte, pl int) []byte {
	var out []byte
	for len(data) > 0 {
		n := min(pl, len(data))
		s := sha1.Sum(data[:n])
		out = append(out, s[:]...)
		data = data[n:]
	}
	return out
}

// allocated returns how many bytes fn allocated on the heap (TotalAlloc
// grows monotonically, so the delta is fn's, plus noise from the runtime).
func allocated(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// replace returns d with key's value set to v (appended when absent).
func replace(d dict, key string, v any) dict {
	out := append(dict(nil), d...)
	for i := range out {
		if out[i].k == key {
			out[i].v = v
			return out
		}
	}
	return append(out, kv{key, v})
}

// without returns d without key.
func without(d dict, key string) dict {
	var out dict
	for _, e := range d {
		if e.k != key {
			out = append(out, e)
		}
	}
	return out
}
