-- Route lookup for the nginx + Lua peers: read the routing header, GET <prefix><value> from
-- Redis, hand the target to nginx. RESP is spoken directly over an ngx.socket.tcp cosocket
-- (resp.lua, shared with the HAProxy peer).
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

local resp = require("resp")

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
    local target, gerr = resp.get(sock, key)
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
