module github.com/shopflow/shopflow/e2e

go 1.26.8
