// Package e2e holds shopflow's end-to-end tests over the whole suite, and
// the checks of the deployment files that run without Docker: the compose
// file against the services' real configuration (compose_test.go) and the
// PostgreSQL roles and schemas of deploy/postgres (roles_test.go).
package e2e
