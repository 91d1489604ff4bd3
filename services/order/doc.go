// Package order is shopflow's order service. Its business logic lands with its
// issue; the messaging backbone it builds on lives in pkg/platform.
package order
