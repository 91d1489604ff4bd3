module github.com/shopflow/shopflow/services/order

go 1.26.8
