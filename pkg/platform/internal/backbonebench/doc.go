// Package backbonebench holds the messaging backbone's benchmarks, run in
// one process on one broker and one PostgreSQL so their figures compare:
// raw kafka-go produce and consume beside the outbox relay draining a
// backlog and the inbox consumer with a no-op handler.
//
//	make bench BENCH=Backbone
package backbonebench
