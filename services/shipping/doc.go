// Package shipping is shopflow's shipping service. Its business logic lands with its
// issue; the messaging backbone it builds on lives in pkg/platform.
package shipping
