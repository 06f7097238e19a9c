// Channel, select, timer and mutex benchmarks in Go: the same workloads as
// sched/examples/bench_chan.rs, printing the same JSON lines.
package main

import (
	"fmt"
	"os"
	"runtime"
	"sort"
	"sync"
	"time"
)

func emit(bench, unit string, value float64) {
	fmt.Printf("{\"bench\":\"%s\",\"implementation\":\"go\",\"value\":%.3f,\"unit\":\"%s\"}\n", bench, value, unit)
}

func pingpong(procs, n int) float64 {
	runtime.GOMAXPROCS(procs)
	ping, pong := make(chan uint32), make(chan uint32)
	go func() {
		for v := range ping {
			pong <- v
		}
	}()
	t := time.Now()
	for i := 0; i < n; i++ {
		ping <- uint32(i)
		<-pong
	}
	d := time.Since(t)
	close(ping)
	return float64(d.Nanoseconds()) / float64(n)
}

func buffered(n int) float64 {
	runtime.GOMAXPROCS(2)
	const pairs = 2
	ch := make(chan uint64, 128)
	var prod, cons sync.WaitGroup
	prod.Add(pairs)
	cons.Add(pairs)
	t := time.Now()
	for p := 0; p < pairs; p++ {
		go func() {
			for i := 0; i < n/pairs; i++ {
				ch <- uint64(i)
			}
			prod.Done()
		}()
		go func() {
			for range ch {
			}
			cons.Done()
		}()
	}
	prod.Wait()
	close(ch)
	cons.Wait()
	return float64(time.Since(t).Nanoseconds()) / float64(n)
}

func sieve(n int) float64 {
	runtime.GOMAXPROCS(2)
	t := time.Now()
	ch := make(chan uint64)
	go func(out chan<- uint64) {
		for i := uint64(2); ; i++ {
			out <- i
		}
	}(ch)
	for i := 0; i < n; i++ {
		prime := <-ch
		next := make(chan uint64)
		go func(in <-chan uint64, out chan<- uint64, p uint64) {
			for v := range in {
				if v%p != 0 {
					out <- v
				}
			}
		}(ch, next, prime)
		ch = next
	}
	return time.Since(t).Seconds() * 1e3
}

func percentile(v []float64, p float64) float64 {
	sort.Float64s(v)
	return v[int(float64(len(v)-1)*p+0.5)]
}

func sleeps(sleepers, rounds int) (float64, float64) {
	runtime.GOMAXPROCS(2)
	stop := make(chan struct{})
	for i := 0; i < 2; i++ {
		go func() {
			for {
				select {
				case <-stop:
					return
				default:
					runtime.Gosched()
				}
			}
		}()
	}
	var mu sync.Mutex
	var all []float64
	var wg sync.WaitGroup
	wg.Add(sleepers)
	for s := 0; s < sleepers; s++ {
		go func() {
			v := make([]float64, 0, rounds)
			for r := 0; r < rounds; r++ {
				t := time.Now()
				time.Sleep(time.Millisecond)
				v = append(v, float64(time.Since(t).Nanoseconds()-1e6)/1e3)
			}
			mu.Lock()
			all = append(all, v...)
			mu.Unlock()
			wg.Done()
		}()
	}
	wg.Wait()
	close(stop)
	return percentile(all, 0.5), percentile(all, 0.99)
}

func mutex(n int) float64 {
	runtime.GOMAXPROCS(2)
	const lockers = 4
	var m sync.Mutex
	var wg sync.WaitGroup
	wg.Add(lockers)
	count := 0
	t := time.Now()
	for l := 0; l < lockers; l++ {
		go func() {
			for i := 0; i < n/lockers; i++ {
				m.Lock()
				count++
				m.Unlock()
			}
			wg.Done()
		}()
	}
	wg.Wait()
	return float64(time.Since(t).Nanoseconds()) / float64(n)
}

func main() {
	quick := len(os.Args) > 1 && os.Args[1] == "--quick"
	scale := func(full int) int {
		if quick {
			return full / 20
		}
		return full
	}
	emit("sched/pingpong/1p", "ns/roundtrip", pingpong(1, scale(200000)))
	emit("sched/pingpong/2p", "ns/roundtrip", pingpong(2, scale(200000)))
	emit("sched/buffered", "ns/value", buffered(scale(2000000)))
	n := 5000
	if quick {
		n = 500
	}
	emit("sched/sieve", "ms", sieve(n))
	sleepers, rounds := 100, 50
	if quick {
		sleepers, rounds = 20, 10
	}
	p50, p99 := sleeps(sleepers, rounds)
	emit("sched/sleep-overshoot-p50", "us", p50)
	emit("sched/sleep-overshoot-p99", "us", p99)
	emit("sched/mutex", "ns/lock", mutex(scale(2000000)))
}
