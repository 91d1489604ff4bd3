package outbox

// AfterDeleteFailed calls f when a batch's delete has failed and been
// reported, before its rows are noted as published and not deleted. Set
// it before Run.
func AfterDeleteFailed(r *Relay, f func()) { r.afterDeleteFailed = f }
