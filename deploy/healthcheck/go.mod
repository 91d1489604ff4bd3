module github.com/shopflow/shopflow/deploy/healthcheck

go 1.26.8
