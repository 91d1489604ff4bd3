package app

import (
	"sync"

	"github.com/shopflow/shopflow/services/order/internal/order"
)

// maxCatalog bounds the cached products; past it the copy starts over.
const maxCatalog = 10_000

// catalog is the service's copy of the active products it has priced
// orders with. It saves placement a read: each placement batch checks its
// lines against the catalog table (check_prices, migration 003), and a
// stale entry fails that check and is forgotten, so the copy is never
// trusted for what is stored. Inactive and unknown SKUs are not kept:
// they are read again, so a product activated elsewhere sells at once.
type catalog struct {
	mu sync.RWMutex
	m  map[string]order.Product
}

// lookup returns the cached products among skus and the SKUs not cached.
func (c *catalog) lookup(skus []string) (found map[string]order.Product, missing []string) {
	found = make(map[string]order.Product, len(skus))
	c.mu.RLock()
	defer c.mu.RUnlock()
	for _, s := range skus {
		if p, ok := c.m[s]; ok {
			found[s] = p
		} else {
			missing = append(missing, s)
		}
	}
	return found, missing
}

// keep caches the active products among ps and drops the others.
func (c *catalog) keep(ps ...order.Product) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= maxCatalog {
		c.m = make(map[string]order.Product)
	}
	for _, p := range ps {
		if p.Active {
			c.m[p.SKU] = p
		} else {
			delete(c.m, p.SKU)
		}
	}
}

// forget drops skus, to be read again.
func (c *catalog) forget(skus ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range skus {
		delete(c.m, s)
	}
}
