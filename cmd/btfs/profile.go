package main

import (
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
)

// Profiling for the benchmark (bench/run), hidden from the flags: it is a
// developer's tool, set by the environment so that it reaches every btfs a
// script starts.
//
//	BTFS_CPUPROFILE=FILE    CPU profile from the start
//	BTFS_BLOCKPROFILE=FILE  block and mutex profiles (FILE and FILE.mutex)
//
// "%p" in FILE becomes the process id. The profiles are written when the
// process receives SIGUSR1 (a profile that needs the process to exit
// cleanly would lose what a killed process did); profiling stops then.
func init() {
	cpu := os.Getenv("BTFS_CPUPROFILE")
	block := os.Getenv("BTFS_BLOCKPROFILE")
	if cpu == "" && block == "" {
		return
	}
	pid := strconv.Itoa(os.Getpid())
	cpu = strings.ReplaceAll(cpu, "%p", pid)
	block = strings.ReplaceAll(block, "%p", pid)
	var cpuFile *os.File
	if cpu != "" {
		f, err := os.Create(cpu)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "btfs: BTFS_CPUPROFILE: %v\n", err)
		} else {
			cpuFile = f
		}
	}
	if block != "" {
		runtime.SetBlockProfileRate(10000) // one event per 10 µs blocked
		runtime.SetMutexProfileFraction(10)
	}
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGUSR1)
	go func() {
		<-ch
		signal.Stop(ch)
		if cpuFile != nil {
			pprof.StopCPUProfile()
			cpuFile.Close()
		}
		if block != "" {
			writeProfile("block", block)
			writeProfile("mutex", block+".mutex")
		}
	}()
}

// writeProfile writes the named runtime profile to path.
func writeProfile(name, path string) {
	f, err := os.Create(path)
	if err != nil {
		fmt.Fprintf(os.Stderr, "btfs: %s profile: %v\n", name, err)
		return
	}
	defer f.Close()
	if err := pprof.Lookup(name).WriteTo(f, 0); err != nil {
		fmt.Fprintf(os.Stderr, "btfs: %s profile: %v\n", name, err)
	}
}
