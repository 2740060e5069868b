"""The notifier's pure logic: events, channels and routes, rendering, signing, retries,
grouping, rate limits and the daily report. No I/O: values in, values out."""
