-- A Redis GET over RESP, for the Lua peers (ringway_route.lua under nginx, haproxy_route.lua
-- under HAProxy): lua-resty-redis is not packaged by Debian, and a GET needs a dozen lines of
-- RESP. `sock` is either host's socket (ngx.socket.tcp or core.tcp): both have
-- send(data) and receive("*l" | n).

local M = {}

-- GET key. Returns the value (string), false (key absent) or nil, err.
function M.get(sock, key)
    local ok, err = sock:send("*2\r\n$3\r\nGET\r\n$" .. #key .. "\r\n" .. key .. "\r\n")
    if not ok then
        return nil, "send: " .. tostring(err)
    end
    local line, rerr = sock:receive("*l")
    if not line then
        return nil, "receive: " .. tostring(rerr)
    end
    local kind = line:sub(1, 1)
    if kind == "$" then
        local n = tonumber(line:sub(2))
        if not n or n < 0 then
            return false
        end
        local data, derr = sock:receive(n + 2)
        if not data then
            return nil, "receive: " .. tostring(derr)
        end
        return data:sub(1, n)
    elseif kind == "-" then
        return nil, "redis: " .. line:sub(2)
    end
    return nil, "unexpected reply: " .. line
end

return M
