module github.com/shopflow/shopflow/services/shipping

go 1.26.8
