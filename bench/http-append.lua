-- One event per request, spread over 64 streams, as a loopback append load.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local payload = string.rep("x", 180)
request = function()
  local stream = "load-" .. math.random(1, 64)
  return wrk.format("POST", "/streams/" .. stream, nil,
    '[{"type":"Loaded","data":{"p":"' .. payload .. '"}}]')
end
