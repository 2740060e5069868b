"""The strategy service's pure logic: instance definitions and what a market's status shows."""
