//go:build !linux

package pcapcmd

import "os"

// growPipe does nothing here: only Linux lets a writer size a pipe.
func growPipe(*os.File) {}
