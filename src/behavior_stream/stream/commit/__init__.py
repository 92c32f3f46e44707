"""The exactly-once protocol: flush order, fences, watermarks, gap repair, the monotonic store."""
