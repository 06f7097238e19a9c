// Scheduler benchmarks in Go, the same workloads as sched/examples/bench_sched.rs.
package main

import (
	"fmt"
	"os"
	"os/exec"
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
	return n * os.Getpagesize()
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

// parkBurst starts n goroutines that each report started and park on a channel, then
// releases them and waits for them to end. It returns the time until the last one reported
// (ns per goroutine) and the RSS growth at that moment (bytes per goroutine).
func parkBurst(n int) (float64, float64) {
	runtime.GOMAXPROCS(2)
	ch := make(chan struct{})
	var ready, done sync.WaitGroup
	ready.Add(n)
	done.Add(n)
	runtime.GC()
	before := rss()
	t := time.Now()
	for i := 0; i < n; i++ {
		go func() {
			ready.Done()
			<-ch
			done.Done()
		}()
	}
	ready.Wait()
	startNs := float64(time.Since(t).Nanoseconds()) / float64(n)
	rssPer := float64(rss()-before) / float64(n)
	close(ch)
	done.Wait()
	return startNs, rssPer
}

// burstIdleMs is the idle time after a burst before RSS is read (as in bench_sched.rs).
const burstIdleMs = 2500

// burstRSSAfter runs a burst of n goroutines that park, then are released and exit, idles,
// and returns RSS in MiB.
func burstRSSAfter(n int) float64 {
	parkBurst(n)
	time.Sleep(burstIdleMs * time.Millisecond)
	return float64(rss()) / float64(1<<20)
}

// inChild runs one workload in a fresh process (as bench_sched.rs does), so memory kept by an
// earlier workload, or goroutines it left warm, do not skew it.
func inChild(workload string, n int) float64 {
	out, err := exec.Command(os.Args[0], "--child", workload, strconv.Itoa(n)).Output()
	if err != nil {
		panic(fmt.Sprintf("%s child failed: %v", workload, err))
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
	if err != nil {
		panic(fmt.Sprintf("%s child printed %q", workload, out))
	}
	return v
}

func main() {
	if len(os.Args) > 3 && os.Args[1] == "--child" {
		n, _ := strconv.Atoi(os.Args[3])
		switch os.Args[2] {
		case "parked-start":
			startNs, _ := parkBurst(n)
			fmt.Println(startNs)
		case "burst":
			fmt.Println(burstRSSAfter(n))
		default:
			panic("unknown child workload " + os.Args[2] + ": use parked-start or burst")
		}
		return
	}
	quick, only := false, ""
	for i, a := range os.Args[1:] {
		if a == "--quick" {
			quick = true
		}
		if a == "--only" && i+2 < len(os.Args) {
			only = os.Args[i+2]
		}
	}
	want := func(name string) bool { return only == "" || only == name }
	nSpawn, nSwitch, nParked := 1000000, 2000000, 1000000
	if quick {
		nSpawn, nSwitch, nParked = 100000, 100000, 100000
	}
	if want("spawn") {
		emit("sched/spawn", "ns/goroutine", spawn(nSpawn))
	}
	if want("switch") {
		emit("sched/switch", "ns/switch", switches(nSwitch))
	}
	if want("parked") {
		_, rssPer := parkBurst(nParked)
		emit("sched/parked", "bytes/goroutine", rssPer)
	}
	if want("parked-start") {
		emit("sched/parked-start", "ns/goroutine", inChild("parked-start", nParked))
	}
	if want("burst-rss-after") {
		emit("sched/burst-rss-after", "MiB", inChild("burst", nParked))
	}
}
