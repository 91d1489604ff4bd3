package inbox

// DieBeforeOffsetCommit makes c stop dead, as a killed process would, after
// a database commit and before committing the offset, whenever f says so.
func DieBeforeOffsetCommit(c *Consumer, f func() bool) { c.dieBeforeOffsetCommit = f }

// FailOffsetCommit makes c's offset commits fail, before they are sent,
// whenever f says so.
func FailOffsetCommit(c *Consumer, f func() bool) { c.failOffsetCommit = f }

// BetweenMembers calls f when Rejoin has ended a member, before the group's
// offsets past the end are reset and the next member starts.
func BetweenMembers(c *Consumer, f func()) { c.betweenMembers = f }
