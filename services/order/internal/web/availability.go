package web

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"

	"github.com/shopflow/shopflow/pkg/platform/config"
)

// availabilityWorkers bounds the concurrent stock requests of one page.
const availabilityWorkers = 8

// availability asks the inventory service for each SKU's available stock,
// all within one Timeout. SKUs it did not answer for (down, slow, unknown
// SKU) are absent: the page shows "unknown" rather than failing.
func (wb *Web) availability(ctx context.Context, skus []string) map[string]int64 {
	ctx, cancel := context.WithTimeout(ctx, wb.cfg.Timeout)
	defer cancel()
	out := make(map[string]int64, len(skus))
	var mu sync.Mutex
	var wg sync.WaitGroup
	work := make(chan string)
	var failures int
	var firstErr error
	for range min(availabilityWorkers, len(skus)) {
		wg.Go(func() {
			for sku := range work {
				n, err := wb.stock(ctx, sku)
				mu.Lock()
				if err != nil {
					failures++
					if firstErr == nil {
						firstErr = err
					}
				} else {
					out[sku] = n
				}
				mu.Unlock()
			}
		})
	}
	for _, s := range skus {
		work <- s
	}
	close(work)
	wg.Wait()
	if failures > 0 {
		// Debug: a stopped inventory would otherwise log on every view.
		wb.log.Debug("availability unknown for some products", "count", failures, "inventory", config.MaskURL(wb.cfg.InventoryURL), "err", firstErr)
	}
	return out
}

func (wb *Web) stock(ctx context.Context, sku string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, wb.cfg.InventoryURL+"/v1/stock/"+url.PathEscape(sku), nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Accept", "application/json")
	res, err := wb.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
		return 0, fmt.Errorf("stock of %s: inventory answered %s", sku, res.Status)
	}
	var body struct {
		Available *int64 `json:"available"`
	}
	if err := json.NewDecoder(io.LimitReader(res.Body, 64<<10)).Decode(&body); err != nil {
		return 0, fmt.Errorf("stock of %s: %w", sku, err)
	}
	if body.Available == nil {
		return 0, fmt.Errorf("stock of %s: no available field in the answer", sku)
	}
	return *body.Available, nil
}
