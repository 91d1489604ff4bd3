module github.com/shopflow/shopflow/services/inventory

go 1.26.8
