// Package e2e holds the end-to-end and crash tests over the whole suite.
package e2e
