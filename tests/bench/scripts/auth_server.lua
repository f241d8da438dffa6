-- Benchmark (tests/bench/waiting.py): the auth service the upgrades ask, a
-- plain wspush HTTP route answering JSON.
return { ["/auth"] = function(req) return { user = "bench" } end }
