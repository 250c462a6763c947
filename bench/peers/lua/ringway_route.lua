-- Route lookup for the nginx + Lua peers: read the routing header, GET <prefix><value> from
-- Redis, hand the target to nginx. lua-resty-redis is not packaged by Debian, so RESP is
-- spoken directly over an ngx.socket.tcp cosocket (a GET needs a dozen lines of it).
--
-- lookup(true):  pooled Redis socket (setkeepalive), target in ngx.ctx for balancer_by_lua.
-- lookup(false): Redis socket closed after each GET, target in ngx.var.target for
--                grpc_pass grpc://$target (the OpenResty gateway before its fix; docs/background.md).
--
-- Errors end the call the way a gRPC gateway should: HTTP 200, trailers-only, grpc-status.

local M = {}

local cfg = {
    header = "jobid",
    prefix = "",
    redis_host = "127.0.0.1",
    redis_port = 6379,
    pool_idle_ms = 10000,
    pool_size = 40,
    timeout_ms = 1000,
}

function M.configure(opts)
    for k, v in pairs(opts) do
        cfg[k] = v
    end
end

local function grpc_error(code, msg)
    ngx.status = 200
    ngx.header["content-type"] = "application/grpc"
    ngx.header["grpc-status"] = tostring(code)
    ngx.header["grpc-message"] = msg
    ngx.send_headers()
    return ngx.exit(200)
end

-- GET key over RESP. Returns value (string), false (key absent) or nil, err.
local function redis_get(sock, key)
    local req = "*2\r\n$3\r\nGET\r\n$" .. #key .. "\r\n" .. key .. "\r\n"
    local ok, err = sock:send(req)
    if not ok then
        return nil, "send: " .. err
    end
    local line, rerr = sock:receive("*l")
    if not line then
        return nil, "receive: " .. rerr
    end
    local kind = line:sub(1, 1)
    if kind == "$" then
        local n = tonumber(line:sub(2))
        if not n or n < 0 then
            return false
        end
        local data, derr = sock:receive(n + 2)
        if not data then
            return nil, "receive: " .. derr
        end
        return data:sub(1, n)
    elseif kind == "-" then
        return nil, "redis: " .. line:sub(2)
    end
    return nil, "unexpected reply: " .. line
end

function M.lookup(pooled)
    local v = ngx.req.get_headers()[cfg.header]
    if type(v) == "table" then
        v = v[1]
    end
    if not v or v == "" then
        return grpc_error(3, "missing routing header " .. cfg.header)
    end
    local key = cfg.prefix .. v
    local sock = ngx.socket.tcp()
    sock:settimeout(cfg.timeout_ms)
    local ok, err = sock:connect(cfg.redis_host, cfg.redis_port)
    if not ok then
        return grpc_error(14, "redis connect: " .. err)
    end
    local target, gerr = redis_get(sock, key)
    if target == nil then
        sock:close()
        return grpc_error(14, "redis GET " .. key .. ": " .. gerr)
    end
    if pooled then
        sock:setkeepalive(cfg.pool_idle_ms, cfg.pool_size)
    else
        sock:close()
    end
    if target == false then
        return grpc_error(5, "no route for key " .. key)
    end
    -- One target, or the first of a comma-separated list (these peers do not balance).
    local first = target:match("^%s*([^,%s]+)")
    local host, port = (first or ""):match("^(.+):(%d+)$")
    if not host then
        return grpc_error(13, "malformed route " .. key .. " = " .. target)
    end
    if pooled then
        ngx.ctx.target_host = host
        ngx.ctx.target_port = tonumber(port)
    else
        ngx.var.target = first
    end
end

return M
