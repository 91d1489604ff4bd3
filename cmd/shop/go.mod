module github.com/shopflow/shopflow/cmd/shop

go 1.26.8

require (
	github.com/shopflow/shopflow/pkg/events v0.0.0
	github.com/shopflow/shopflow/pkg/platform v0.0.0
)

replace (
	github.com/shopflow/shopflow/pkg/events => ../../pkg/events
	github.com/shopflow/shopflow/pkg/platform => ../../pkg/platform
)
