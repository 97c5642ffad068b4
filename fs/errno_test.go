package fs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"testing"

	"btfs/storagewrapper"
)

func TestToErrno(t *testing.T) {
	// wrapped is how storagewrapper.ReadAt reports a context that ended.
	wrapped := func(err error) error {
		return fmt.Errorf("storagewrapper: read at 5 waiting for piece 1: %w", err)
	}
	tests := []struct {
		name string
		err  error
		want syscall.Errno
	}{
		{"nil", nil, 0},
		{"interrupt", wrapped(context.Canceled), syscall.EINTR},
		{"bare canceled", context.Canceled, syscall.EINTR},
		{"read timeout", fmt.Errorf("%w (%w)", wrapped(context.DeadlineExceeded), errReadTimeout), syscall.EIO},
		{"bare deadline", context.DeadlineExceeded, syscall.EIO},
		{"unmounting, not an interrupt", fmt.Errorf("%w (%w)", wrapped(context.Canceled), errUnmounting), syscall.EIO},
		{"torrent closed", wrapped(storagewrapper.ErrClosed), syscall.EIO},
		{"cache disk full", fmt.Errorf("read piece 3: %w: %w", storagewrapper.ErrStore, &os.PathError{Op: "write", Path: "p", Err: syscall.ENOSPC}), syscall.ENOSPC},
		{"over quota", fmt.Errorf("read piece 3: %w: %w", storagewrapper.ErrStore, syscall.EDQUOT), syscall.EDQUOT},
		{"cache read-only", fmt.Errorf("read piece 3: %w: %w", storagewrapper.ErrStore, syscall.EROFS), syscall.EIO},
		{"cache dir gone", fmt.Errorf("read piece 3: %w: %w", storagewrapper.ErrStore, syscall.ENOENT), syscall.EIO},
		{"unmounting while the disk is full", fmt.Errorf("%w (%w): %w", wrapped(context.Canceled), errUnmounting, syscall.ENOSPC), syscall.EIO},
		{"short read", io.ErrUnexpectedEOF, syscall.EIO},
		{"other", errors.New("boom"), syscall.EIO},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := toErrno(tt.err); got != tt.want {
				t.Errorf("toErrno(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}
