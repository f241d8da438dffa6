-- A script whose routes table is empty: a start-up error, not a server that
-- answers 404 to everything.
return {}
