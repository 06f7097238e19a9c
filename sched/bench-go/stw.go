// Stop-the-world latency with every P busy in loops without calls, the cost of a
// cooperative preemption point, and the throughput a 2-P program keeps while one goroutine
// hogs a P: the same workloads as sched/examples/bench_stw.rs.
//
// Go offers no bare stop/start to user code; runtime.ReadMemStats is a stop of the world
// around a copy of the statistics, so its duration is Go's stop-to-restart time (plus that
// small copy). The goroutines spinning without calls are stopped by Go's async preemption
// (a signal), as gort's are.
package main

import (
	"fmt"
	"os"
	"runtime"
	"sort"
	"sync/atomic"
	"time"
)

func emit(bench, unit string, value float64) {
	fmt.Printf("{\"bench\":\"%s\",\"implementation\":\"go\",\"value\":%.3f,\"unit\":\"%s\"}\n", bench, value, unit)
}

func pct(s []float64, q float64) float64 {
	return s[int(float64(len(s)-1)*q+0.5)]
}

func stw(stops int) []float64 {
	runtime.GOMAXPROCS(2)
	var stop int32
	var spins [2]int64
	for i := 0; i < 2; i++ {
		go func(i int) {
			var n int64
			for atomic.LoadInt32(&stop) == 0 {
				n++
				if n&0xFFFF == 0 {
					atomic.StoreInt64(&spins[i], n)
				}
			}
		}(i)
	}
	for atomic.LoadInt64(&spins[0]) == 0 || atomic.LoadInt64(&spins[1]) == 0 {
		runtime.Gosched()
	}
	var ms runtime.MemStats
	times := make([]float64, 0, stops)
	for i := 0; i < stops; i++ {
		time.Sleep(time.Millisecond)
		t := time.Now()
		runtime.ReadMemStats(&ms)
		times = append(times, float64(time.Since(t).Nanoseconds())/1e3)
	}
	atomic.StoreInt32(&stop, 1)
	sort.Float64s(times)
	return times
}

//go:noinline
func preemptPoint() {}

var sink int

func safepointCost(iters int) float64 {
	diffs := make([]float64, 0, 5)
	for r := 0; r < 5; r++ {
		t := time.Now()
		for i := 0; i < iters; i++ {
			sink = i
		}
		base := time.Since(t).Seconds()
		t = time.Now()
		for i := 0; i < iters; i++ {
			preemptPoint()
			sink = i
		}
		with := time.Since(t).Seconds()
		d := (with - base) / float64(iters) * 1e9
		if d < 0 {
			d = 0
		}
		diffs = append(diffs, d)
	}
	sort.Float64s(diffs)
	return diffs[2]
}

func pairs(dur time.Duration, hog bool) float64 {
	runtime.GOMAXPROCS(2)
	var stop int32
	var trips int64
	if hog {
		go func() {
			for atomic.LoadInt32(&stop) == 0 {
			}
		}()
		time.Sleep(20 * time.Millisecond)
	}
	for p := 0; p < 4; p++ {
		ping := make(chan int64)
		pong := make(chan int64)
		go func() {
			for v := range ping {
				pong <- v
			}
		}()
		go func() {
			var n int64
			for atomic.LoadInt32(&stop) == 0 {
				ping <- n
				<-pong
				n++
				if n%256 == 0 {
					atomic.AddInt64(&trips, 256)
				}
			}
			close(ping)
		}()
	}
	time.Sleep(50 * time.Millisecond)
	before := atomic.LoadInt64(&trips)
	t := time.Now()
	time.Sleep(dur)
	done := atomic.LoadInt64(&trips) - before
	rate := float64(done) / time.Since(t).Seconds()
	atomic.StoreInt32(&stop, 1)
	time.Sleep(20 * time.Millisecond)
	return rate
}

func main() {
	quick := len(os.Args) > 1 && os.Args[1] == "--quick"
	stops, iters, dur := 400, 200000000, time.Second
	if quick {
		stops, iters, dur = 50, 10000000, 200*time.Millisecond
	}
	t := stw(stops)
	emit("sched/stw-p50", "us", pct(t, 0.5))
	emit("sched/stw-p90", "us", pct(t, 0.9))
	emit("sched/stw-max", "us", t[len(t)-1])
	emit("sched/safepoint", "ns", safepointCost(iters))
	base := pairs(dur, false)
	hogged := pairs(dur, true)
	emit("sched/hog-throughput-kept", "ratio", hogged/base)
	c := 2 * (1 - hogged/base)
	if c < 0 {
		c = 0
	}
	emit("sched/hog-cost", "P", c)
}
