package consume

// GatewayCalls exposes gatewayCalls to the tests.
const GatewayCalls = gatewayCalls
