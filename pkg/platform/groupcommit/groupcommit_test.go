package groupcommit_test

import (
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shopflow/shopflow/pkg/platform/groupcommit"
)

// The items that queue while a group is at work go together into the
// next group, oldest first, at most maxGroup of them, one per key; the
// rest wait for the groups after.
func TestQueueGroupsWhatWaits(t *testing.T) {
	var (
		mu     sync.Mutex
		groups [][]string
		done   sync.WaitGroup
	)
	hold := make(chan struct{})
	key := func(s string) (string, bool) { k, _, ok := strings.Cut(s, "/"); return k, ok }
	q := groupcommit.New(3, 1, key, func(g []string) {
		mu.Lock()
		groups = append(groups, g)
		first := len(groups) == 1
		mu.Unlock()
		if first {
			<-hold
		}
		for range g {
			done.Done()
		}
	})
	items := []string{"first", "a/1", "b/1", "a/2", "plain", "c/1", "d/1"}
	done.Add(len(items))
	q.Add(items[0])
	for deadline := time.Now().Add(10 * time.Second); ; {
		mu.Lock()
		n := len(groups)
		mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the first group never ran")
		}
		time.Sleep(time.Millisecond)
	}
	for _, it := range items[1:] {
		q.Add(it)
	}
	if n := q.Waiting(); n != len(items)-1 {
		t.Fatalf("%d waiting, want %d", n, len(items)-1)
	}
	close(hold)
	done.Wait()
	want := [][]string{{"first"}, {"a/1", "b/1", "plain"}, {"a/2", "c/1", "d/1"}}
	if !slices.EqualFunc(groups, want, slices.Equal) {
		t.Errorf("groups %v, want %v", groups, want)
	}
	if q.Waiting() != 0 {
		t.Errorf("%d left waiting", q.Waiting())
	}
}

// No more than maxLeaders groups are at work at once.
func TestQueueBoundsLeaders(t *testing.T) {
	const leaders = 2
	var (
		mu            sync.Mutex
		running, most int
		done          sync.WaitGroup
	)
	q := groupcommit.New(1, leaders, nil, func(g []int) {
		mu.Lock()
		running++
		most = max(most, running)
		mu.Unlock()
		time.Sleep(time.Millisecond)
		mu.Lock()
		running--
		mu.Unlock()
		done.Done()
	})
	done.Add(50)
	for i := range 50 {
		q.Add(i)
	}
	done.Wait()
	if most > leaders {
		t.Errorf("%d groups at work at once, want at most %d", most, leaders)
	}
}
