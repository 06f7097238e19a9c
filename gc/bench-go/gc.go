// Go's side of gc/examples/bench_gc.rs: the same collector workloads on Go's runtime.
//
// gc/binarytrees/{time,rss,pause-p50,pause-p99,pause-max}: the Benchmarks Game binary-trees
// program at depth 21 (goroutines over the depth levels, GOMAXPROCS=2): wall time in s, peak
// RSS in MiB (getrusage, in a child process of its own), and per-cycle stop-the-world pause
// percentiles in µs (MemStats.PauseNs).
//
// gc/latency/{pause-p50,pause-p90,pause-max,tick-delay-max}: 128 MiB of live pointer-dense
// objects (binary trees of 16-byte nodes) churned by one goroutine (it replaces random
// subtrees) until at least 300 cycles have run; per cycle the sum of its stop-the-world
// pauses (what PauseNs records) in µs, and the worst extra delay seen by a goroutine that
// sleeps 1 ms in a loop.
//
// Usage: go run gc.go [--quick]   (child mode: gc.go --child binarytrees [--quick])
package main

import (
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func emit(bench string, value float64, unit string) {
	fmt.Printf("{\"bench\":\"%s\",\"implementation\":\"go\",\"value\":%.3f,\"unit\":\"%s\"}\n", bench, value, unit)
}

type Node struct{ left, right *Node }

func bottomUp(d int) *Node {
	if d <= 0 {
		return &Node{}
	}
	return &Node{bottomUp(d - 1), bottomUp(d - 1)}
}

func (n *Node) check() int {
	if n.left == nil {
		return 1
	}
	return 1 + n.left.check() + n.right.check()
}

// pauses returns the per-cycle pause sums (µs) of the cycles since `from`.
func pauses(from uint32) []float64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	var out []float64
	for c := from; c < ms.NumGC; c++ {
		out = append(out, float64(ms.PauseNs[c%256])/1e3)
	}
	sort.Float64s(out)
	return out
}

func pct(v []float64, p float64) float64 {
	if len(v) == 0 {
		return 0
	}
	i := int(p * float64(len(v)-1))
	return v[i]
}

func binarytrees(maxDepth int) {
	runtime.GOMAXPROCS(2)
	start := time.Now()
	const minDepth = 4
	stretch := bottomUp(maxDepth + 1)
	_ = stretch.check()
	stretch = nil
	long := bottomUp(maxDepth)
	var wg sync.WaitGroup
	results := make([]int, maxDepth+1)
	for d := minDepth; d <= maxDepth; d += 2 {
		wg.Add(1)
		go func(d int) {
			defer wg.Done()
			iters := 1 << uint(maxDepth-d+minDepth)
			check := 0
			for i := 0; i < iters; i++ {
				check += bottomUp(d).check()
			}
			results[d] = check
		}(d)
	}
	wg.Wait()
	if long.check() != 1<<uint(maxDepth+1)-1 {
		panic("long-lived tree")
	}
	el := time.Since(start).Seconds()
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	p := pauses(0)
	emit("gc/binarytrees/time", el, "s")
	emit("gc/binarytrees/rss", float64(ru.Maxrss)/1024, "MiB")
	emit("gc/binarytrees/pause-p50", pct(p, 0.5), "us")
	emit("gc/binarytrees/pause-p99", pct(p, 0.99), "us")
	emit("gc/binarytrees/pause-max", pct(p, 1), "us")
}

func latency(liveMiB int, cycles uint32) {
	runtime.GOMAXPROCS(2)
	// 16-byte nodes in trees of depth 15 (64k nodes, 1 MiB each).
	const depth = 15
	ntrees := liveMiB
	trees := make([]*Node, ntrees)
	for i := range trees {
		trees[i] = bottomUp(depth)
	}
	var stop atomic.Bool
	var worst int64
	var tickWG sync.WaitGroup
	tickWG.Add(1)
	go func() {
		defer tickWG.Done()
		for !stop.Load() {
			t := time.Now()
			time.Sleep(time.Millisecond)
			if d := time.Since(t) - time.Millisecond; int64(d) > atomic.LoadInt64(&worst) {
				atomic.StoreInt64(&worst, int64(d))
			}
		}
	}()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	from := ms.NumGC
	r := rand.New(rand.NewSource(1))
	for it := 0; ; it++ {
		// Replace a random subtree of depth 10 (2k nodes) in a random tree.
		t := trees[r.Intn(ntrees)]
		n := t
		for k := 0; k < depth-10-1; k++ {
			if r.Intn(2) == 0 {
				n = n.left
			} else {
				n = n.right
			}
		}
		if r.Intn(2) == 0 {
			n.left = bottomUp(10)
		} else {
			n.right = bottomUp(10)
		}
		// ReadMemStats stops the world: look at the cycle count only now and then.
		if it%256 == 0 {
			runtime.ReadMemStats(&ms)
			if ms.NumGC >= from+cycles {
				break
			}
		}
	}
	stop.Store(true)
	tickWG.Wait()
	p := pauses(from)
	emit("gc/latency/pause-p50", pct(p, 0.5), "us")
	emit("gc/latency/pause-p90", pct(p, 0.9), "us")
	emit("gc/latency/pause-max", pct(p, 1), "us")
	emit("gc/latency/tick-delay-max", float64(atomic.LoadInt64(&worst))/1e3, "us")
	runtime.KeepAlive(trees)
}

func main() {
	quick := false
	child := ""
	args := os.Args[1:]
	for i := 0; i < len(args); i++ {
		switch args[i] {
		case "--quick":
			quick = true
		case "--child":
			i++
			child = args[i]
		}
	}
	depth, live, cycles := 21, 128, uint32(300)
	if quick {
		depth, live, cycles = 16, 16, 20
	}
	if child == "binarytrees" {
		binarytrees(depth)
		return
	}
	// binary-trees in a child of its own, so its peak RSS is its own.
	cargs := []string{"--child", "binarytrees"}
	if quick {
		cargs = append(cargs, "--quick")
	}
	out, err := exec.Command(os.Args[0], cargs...).Output()
	if err != nil {
		fmt.Fprintln(os.Stderr, "binarytrees child:", err)
		os.Exit(1)
	}
	fmt.Print(string(out))
	latency(live, cycles)
}
