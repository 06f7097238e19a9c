// Scheduler benchmarks in Go, the same workloads as sched/examples/bench_sched.rs.
package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
)

func emit(bench, unit string, value float64) {
	fmt.Printf("{\"bench\":\"%s\",\"implementation\":\"go\",\"value\":%.3f,\"unit\":\"%s\"}\n", bench, value, unit)
}

func rss() int {
	b, _ := os.ReadFile("/proc/self/statm")
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	n, _ := strconv.Atoi(f[1])
	return n * 4096
}

func spawn(n int) float64 {
	runtime.GOMAXPROCS(2)
	var wg sync.WaitGroup
	wg.Add(n)
	t := time.Now()
	for i := 0; i < n; i++ {
		go func() { wg.Done() }()
	}
	wg.Wait()
	return float64(time.Since(t).Nanoseconds()) / float64(n)
}

func switches(n int) float64 {
	prev := runtime.GOMAXPROCS(1)
	defer runtime.GOMAXPROCS(prev)
	var wg sync.WaitGroup
	wg.Add(2)
	t := time.Now()
	for g := 0; g < 2; g++ {
		go func() {
			for i := 0; i < n; i++ {
				runtime.Gosched()
			}
			wg.Done()
		}()
	}
	wg.Wait()
	return float64(time.Since(t).Nanoseconds()) / float64(2*n)
}

func parked(n int) float64 {
	runtime.GOMAXPROCS(2)
	ch := make(chan struct{})
	var ready, done sync.WaitGroup
	ready.Add(n)
	done.Add(n)
	runtime.GC()
	before := rss()
	for i := 0; i < n; i++ {
		go func() {
			ready.Done()
			<-ch
			done.Done()
		}()
	}
	ready.Wait()
	per := float64(rss()-before) / float64(n)
	close(ch)
	done.Wait()
	return per
}

func main() {
	quick := len(os.Args) > 1 && os.Args[1] == "--quick"
	nSpawn, nSwitch, nParked := 1000000, 2000000, 1000000
	if quick {
		nSpawn, nSwitch, nParked = 100000, 100000, 100000
	}
	emit("sched/spawn", "ns/goroutine", spawn(nSpawn))
	emit("sched/switch", "ns/switch", switches(nSwitch))
	emit("sched/parked", "bytes/goroutine", parked(nParked))
}
