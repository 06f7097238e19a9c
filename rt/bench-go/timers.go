// Timer storm in Go: 100k goroutines each sleeping 1 ms in a loop for 2 s (the same
// workload as rt/examples/bench_timers.rs), printing the same JSON lines.
package main

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

const buckets = 200000
const bucketUs = 10

func emit(bench, unit string, value float64) {
	fmt.Printf("{\"bench\":\"%s\",\"implementation\":\"go\",\"value\":%.3f,\"unit\":\"%s\"}\n", bench, value, unit)
}

func main() {
	n, run := 100000, 2*time.Second
	for _, a := range os.Args[1:] {
		if a == "--quick" {
			n, run = 10000, 300*time.Millisecond
		}
	}
	hist := make([]uint64, buckets)
	var stop int32
	var wg sync.WaitGroup
	wg.Add(n)
	t := time.Now()
	for i := 0; i < n; i++ {
		go func() {
			for atomic.LoadInt32(&stop) == 0 {
				s := time.Now()
				time.Sleep(time.Millisecond)
				us := (time.Since(s) - time.Millisecond).Microseconds() / bucketUs
				if us < 0 {
					us = 0
				}
				if us >= buckets {
					us = buckets - 1
				}
				atomic.AddUint64(&hist[us], 1)
			}
			wg.Done()
		}()
	}
	time.Sleep(run)
	atomic.StoreInt32(&stop, 1)
	elapsed := time.Since(t)
	wg.Wait()
	var total uint64
	for i := range hist {
		total += atomic.LoadUint64(&hist[i])
	}
	want, seen, p99 := total*99/100, uint64(0), float64(buckets*bucketUs)
	for us := range hist {
		seen += hist[us]
		if seen > want {
			p99 = float64(us * bucketUs)
			break
		}
	}
	emit("rt/timers/wakeups-per-s", "wakeups/s", float64(total)/elapsed.Seconds())
	emit("rt/timers/overshoot-p99", "us", p99)
}
