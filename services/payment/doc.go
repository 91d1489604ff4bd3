// Package payment is shopflow's payment service. Its business logic lands with its
// issue; the messaging backbone it builds on lives in pkg/platform.
package payment
