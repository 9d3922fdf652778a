// gomemcache (Debian's golang-github-bradfitz-gomemcache-dev, text protocol),
// driven by tests/test_clients.py, built offline in GOPATH mode
// (GO111MODULE=off GOPATH=/usr/share/gocode).
//
// usage: client HOST PORT checks|write|reread
// Prints "ok <check>" per check; the first failure prints "FAIL <check>: why"
// and exits 1.
package main

import (
	"fmt"
	"os"
	"reflect"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
)

var mc *memcache.Client

// an absolute exptime in the past: expired at once, no waiting
var past = int32(time.Now().Unix() - 3600)

func expect(got, want interface{}) {
	if !reflect.DeepEqual(got, want) {
		panic(fmt.Sprintf("got %#v, want %#v", got, want))
	}
}

func value(key string) interface{} {
	it, err := mc.Get(key)
	if err == memcache.ErrCacheMiss {
		return nil
	}
	if err != nil {
		panic(err.Error())
	}
	return string(it.Value)
}

func check(name string, fn func()) {
	defer func() {
		if r := recover(); r != nil {
			fmt.Printf("FAIL %s: %v\n", name, r)
			os.Exit(1)
		}
	}()
	fn()
	fmt.Printf("ok %s\n", name)
}

func set(key, val string, exp int32) {
	expect(mc.Set(&memcache.Item{Key: key, Value: []byte(val), Expiration: exp}), nil)
}

type namedCheck struct {
	name string
	fn   func()
}

var checks = []namedCheck{
	{"set_get", func() {
		set("go:k", "hello", 0)
		expect(value("go:k"), "hello")
		expect(value("go:missing"), nil)
	}},
	{"get_multi", func() {
		set("go:a", "1", 0)
		set("go:b", "2", 0)
		items, err := mc.GetMulti([]string{"go:a", "go:b", "go:nope"})
		expect(err, nil)
		got := map[string]string{}
		for k, it := range items {
			got[k] = string(it.Value)
		}
		expect(got, map[string]string{"go:a": "1", "go:b": "2"})
	}},
	{"delete", func() {
		expect(mc.Delete("go:a"), nil)
		expect(value("go:a"), nil)
		expect(mc.Delete("go:a"), memcache.ErrCacheMiss)
	}},
	{"incr_decr", func() {
		set("go:n", "10", 0)
		n, err := mc.Increment("go:n", 5)
		expect(err, nil)
		expect(n, uint64(15))
		n, err = mc.Decrement("go:n", 20)
		expect(err, nil)
		expect(n, uint64(0)) // decr stops at 0
		_, err = mc.Increment("go:nothere", 1)
		expect(err, memcache.ErrCacheMiss)
	}},
	{"cas", func() {
		set("go:c", "v1", 0)
		it, err := mc.Get("go:c")
		expect(err, nil)
		it.Value = []byte("v2")
		expect(mc.CompareAndSwap(it), nil)
		it.Value = []byte("v3")
		expect(mc.CompareAndSwap(it), memcache.ErrCASConflict) // the token is stale now
		expect(value("go:c"), "v2")
	}},
	{"touch", func() {
		set("go:t", "x", 0)
		expect(mc.Touch("go:t", 3600), nil)
		expect(value("go:t"), "x")
		expect(mc.Touch("go:t", past), nil)
		expect(value("go:t"), nil)
		expect(mc.Touch("go:t", 3600), memcache.ErrCacheMiss)
	}},
	{"expiry", func() {
		set("go:e", "x", past)
		expect(value("go:e"), nil)
		set("go:e2", "y", 3600)
		expect(value("go:e2"), "y")
	}},
	{"flush", func() {
		set("go:f", "x", 0)
		expect(mc.FlushAll(), nil)
		expect(value("go:f"), nil)
	}},
}

func main() {
	mc = memcache.New(os.Args[1] + ":" + os.Args[2])
	mc.Timeout = 2 * time.Second
	switch os.Args[3] {
	case "checks":
		for _, c := range checks {
			check(c.name, c.fn)
		}
	case "write":
		check("persist_written", func() { set("go:reread", "kept", 0) })
	default:
		check("restart_keeps_data", func() { expect(value("go:reread"), "kept") })
	}
}
