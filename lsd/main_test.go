package lsd

import (
	"testing"

	"btfs/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }
