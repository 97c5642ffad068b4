package webseed

import (
	"testing"

	"btfs/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }
