// Go's side of alloc/examples/bench_alloc.rs: the same figures with Go's `new`.
//
// alloc/steady/<size>/<noscan|ptr>/<threads>t: each goroutine (GOMAXPROCS = threads) stores
// new objects into a ring that holds its share of a fixed live set, so every new object makes
// an old one garbage; the collector runs as GOGC=100 paces it. Each goroutine times its own run
// from a common start signal and the slowest counts, as in the Rust program. alloc/fast16/<kind>: a tight
// loop of 16-byte `new`s into a sink (Go cannot time its fast path apart from its GC, so this
// includes collection work). alloc/rss/*: a burst of 64-byte objects of which 1/8 stay live
// (runs of 1024), then debug.FreeOSMemory(); RSS growth from /proc/self/statm.
// alloc/huge-churn/rss: 8 rounds of allocating, touching and dropping a 96 MiB object
// (runtime.GC after each); RSS growth after the last round.
//
// Usage: go run alloc.go [--quick]
package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"
)

type n8 [8]byte
type n16 [16]byte
type n64 [64]byte
type n1024 [1024]byte
type n32768 [32768]byte
type p8 [1]*int
type p16 [2]*int
type p64 [8]*int
type p1024 [128]*int
type p32768 [4096]*int

var sink interface{}

func emit(bench string, value float64, unit string) {
	fmt.Printf("{\"bench\":\"%s\",\"implementation\":\"go\",\"value\":%.3f,\"unit\":\"%s\"}\n", bench, value, unit)
}

func opsFor(live, size, scale int) int {
	ops := 80 * live / size
	if ops < 40000 {
		ops = 40000
	}
	if ops > 4000000 {
		ops = 4000000
	}
	return ops / scale
}

func steady[T any](size, threads, live, scale int) float64 {
	runtime.GOMAXPROCS(threads)
	defer runtime.GOMAXPROCS(2)
	perThread := live / threads / size
	if perThread < 1 {
		perThread = 1
	}
	ops := opsFor(live, size, scale)
	runtime.GC()
	var wg sync.WaitGroup
	start := make(chan struct{})
	elapsed := make([]time.Duration, threads)
	for t := 0; t < threads; t++ {
		wg.Add(1)
		go func(t int) {
			defer wg.Done()
			ring := make([]*T, perThread)
			<-start
			t0 := time.Now()
			for i := 0; i < ops+perThread; i++ {
				ring[i%perThread] = new(T)
			}
			elapsed[t] = time.Since(t0)
			sink = ring
		}(t)
	}
	close(start)
	wg.Wait()
	sink = nil
	// Each goroutine times its own run from the start signal; the slowest counts.
	var el time.Duration
	for _, e := range elapsed {
		if e > el {
			el = e
		}
	}
	return float64(el.Nanoseconds()) / float64(ops+perThread)
}

func fast16[T any](rounds int) float64 {
	n := rounds * 500
	var s *T
	t0 := time.Now()
	for i := 0; i < n; i++ {
		s = new(T)
	}
	el := time.Since(t0)
	sink = s
	return float64(el.Nanoseconds()) / float64(n)
}

func rss() int {
	b, _ := os.ReadFile("/proc/self/statm")
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	p, _ := strconv.Atoi(f[1])
	return p * os.Getpagesize()
}

func rssChild(burst int) {
	const mib = float64(1 << 20)
	n := burst / 64
	// The list of live objects is the benchmark's: make and touch it before the baseline.
	live := make([]*n64, n/8+1024)
	for i := range live {
		live[i] = nil
	}
	live = live[:0]
	runtime.GC()
	debug.FreeOSMemory()
	base := rss()
	var tmp *n64
	for i := 0; i < n; i++ {
		o := new(n64)
		o[0] = byte(i)
		if (i/1024)%8 == 0 {
			live = append(live, o)
		}
		tmp = o
	}
	sink = tmp
	sink = nil
	runtime.GC()
	afterBurst := rss()
	debug.FreeOSMemory()
	afterRelease := rss()
	liveBytes := float64(len(live) * 64)
	g := func(r int) float64 {
		if r < base {
			return 0
		}
		return float64(r - base)
	}
	emit("alloc/rss/after-burst", g(afterBurst)/mib, "MiB")
	emit("alloc/rss/after-release", g(afterRelease)/mib, "MiB")
	emit("alloc/rss/live-rounded", liveBytes/mib, "MiB")
	emit("alloc/rss/release-vs-live", g(afterRelease)/liveBytes, "x")
	runtime.KeepAlive(live)
}

// hugeChild: alloc/huge-churn/rss — rounds of allocating a 96 MiB object, writing one byte
// per 4 KiB page and dropping it (runtime.GC after each); RSS growth after the last round.
func hugeChild(rounds int) {
	const mib = float64(1 << 20)
	runtime.GC()
	debug.FreeOSMemory()
	base := rss()
	for r := 0; r < rounds; r++ {
		b := make([]byte, 96<<20)
		for i := 0; i < len(b); i += 4096 {
			b[i] = byte(r + 1)
		}
		sink = b
		sink = nil
		runtime.GC()
	}
	g := float64(rss() - base)
	if g < 0 {
		g = 0
	}
	emit("alloc/huge-churn/rss", g/mib, "MiB")
}

func main() {
	quick := false
	rssMode := false
	hugeMode := false
	for _, a := range os.Args[1:] {
		if a == "--quick" {
			quick = true
		}
		if a == "--rss" {
			rssMode = true
		}
		if a == "--huge" {
			hugeMode = true
		}
	}
	live, scale, rounds, burst := 4<<20, 1, 4000, 64<<20
	if quick {
		live, scale, rounds, burst = 1<<20, 20, 200, 16<<20
	}
	hugeRounds := 8
	if quick {
		hugeRounds = 2
	}
	if rssMode {
		rssChild(burst)
		return
	}
	if hugeMode {
		hugeChild(hugeRounds)
		return
	}
	emit("alloc/fast16/noscan", fast16[n16](rounds), "ns/op")
	emit("alloc/fast16/ptr", fast16[p16](rounds), "ns/op")
	for _, threads := range []int{1, 2} {
		for _, size := range []int{8, 16, 64, 1024, 32768} {
			for _, kind := range []string{"noscan", "ptr"} {
				var ns float64
				switch {
				case size == 8 && kind == "noscan":
					ns = steady[n8](size, threads, live, scale)
				case size == 8:
					ns = steady[p8](size, threads, live, scale)
				case size == 16 && kind == "noscan":
					ns = steady[n16](size, threads, live, scale)
				case size == 16:
					ns = steady[p16](size, threads, live, scale)
				case size == 64 && kind == "noscan":
					ns = steady[n64](size, threads, live, scale)
				case size == 64:
					ns = steady[p64](size, threads, live, scale)
				case size == 1024 && kind == "noscan":
					ns = steady[n1024](size, threads, live, scale)
				case size == 1024:
					ns = steady[p1024](size, threads, live, scale)
				case kind == "noscan":
					ns = steady[n32768](size, threads, live, scale)
				default:
					ns = steady[p32768](size, threads, live, scale)
				}
				emit(fmt.Sprintf("alloc/steady/%d/%s/%dt", size, kind, threads), ns, "ns/op")
			}
		}
	}
	// RSS figures in child processes of their own, as the Rust program does.
	exe, err := os.Executable()
	if err == nil {
		for _, mode := range []string{"--rss", "--huge"} {
			args := []string{mode}
			if quick {
				args = append(args, "--quick")
			}
			out, err := exec.Command(exe, args...).Output()
			if err == nil {
				fmt.Print(string(out))
			} else {
				fmt.Fprintln(os.Stderr, mode, "child:", err)
			}
		}
	}
}
