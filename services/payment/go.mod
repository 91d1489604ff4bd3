module github.com/shopflow/shopflow/services/payment

go 1.26.8
