-- Route lookup for the HAProxy + Lua peer (haproxy-lua.cfg): read the routing header, GET
-- <prefix><value> from Redis, and leave the target's address and port in txn.dst_ip and
-- txn.dst_port for `set-dst` / `set-dst-port`; on failure, a gRPC status and message in
-- txn.grpc_status / txn.grpc_message for the frontend's `http-request return`.
--
-- Redis connections are pooled: a socket that answered goes back to an idle list for the next
-- call (the pattern of the HAProxy Lua author's "Lua & Redis: connection pool"; one thread, so
-- no lock). A pooled socket that fails (HAProxy closes Lua sockets idle for a few seconds) is
-- dropped and the GET tried once more on a new one. Without the pool — a socket per call,
-- closed after the reply — HAProxy 2.6 left thousands of them open to Redis within seconds
-- until Redis refused more clients, so that is not a variant measured here.
--
-- Configured by the environment, which the config's `setenv` lines set (HAProxy 2.6 passes no
-- arguments to a `lua-load`ed file): ROUTE_LUA_DIR, ROUTE_REDIS_HOST, ROUTE_REDIS_PORT,
-- ROUTE_HEADER, ROUTE_PREFIX (after a leading "-": `setenv` takes no empty value), and
-- ROUTE_TLS=1 when the config's server line speaks TLS (haproxy-lua-tls.cfg): then a route must
-- be `https://ip:port`, else `ip:port` or `http://ip:port`, as ringway reads a route's scheme.

-- resp.lua (RESP's GET, shared with the nginx peers) sits beside this file.
package.path = (os.getenv("ROUTE_LUA_DIR") or ".") .. "/?.lua;" .. package.path
local resp = require("resp")

local redis_host = os.getenv("ROUTE_REDIS_HOST") or "127.0.0.1"
local redis_port = tonumber(os.getenv("ROUTE_REDIS_PORT") or "6379")
local header = os.getenv("ROUTE_HEADER") or "jobid"
local prefix = (os.getenv("ROUTE_PREFIX") or "-"):sub(2)
local tls = os.getenv("ROUTE_TLS") == "1"

local function fail(txn, code, msg)
    txn:set_var("txn.grpc_status", code)
    txn:set_var("txn.grpc_message", msg)
end

-- Idle Redis sockets, most recently used last; at most POOL_MAX kept.
local idle = {}
local POOL_MAX = 1024

local function connect()
    local sock = core.tcp()
    sock:settimeout(1)
    local ok, err = sock:connect(redis_host, redis_port)
    if not ok then
        return nil, "redis connect: " .. tostring(err)
    end
    return sock
end

-- GET key on `sock`; a socket that answered goes back to the idle list (closed if the list is
-- full), one that failed is closed.
local function get_on(sock, key)
    local value, err = resp.get(sock, key)
    if value ~= nil and #idle < POOL_MAX then
        idle[#idle + 1] = sock
    else
        sock:close()
    end
    return value, err
end

-- GET key on a pooled socket, or on a new one if there is none or the pooled one failed.
local function pooled_get(key)
    local sock = table.remove(idle)
    if sock then
        local value = get_on(sock, key)
        if value ~= nil then
            return value
        end
    end
    local fresh, cerr = connect()
    if not fresh then
        return nil, cerr
    end
    return get_on(fresh, key)
end

core.register_action("redis_route", { "http-req" }, function(txn)
    local v = txn.f:req_hdr(header)
    if not v or v == "" then
        return fail(txn, 3, "missing routing header " .. header)
    end
    local key = prefix .. v
    local target, gerr = pooled_get(key)
    if target == nil then
        return fail(txn, 14, "redis GET " .. key .. ": " .. gerr)
    end
    if target == false then
        return fail(txn, 5, "no route for key " .. key)
    end
    -- One target, or the first of a comma-separated list (this peer does not balance).
    local first = target:match("^%s*([^,%s]+)") or ""
    local scheme, rest = first:match("^(%a+)://(.*)$")
    local scheme_ok
    if tls then
        scheme_ok = scheme == "https"
    else
        scheme_ok = scheme == nil or scheme == "http"
    end
    if not scheme_ok then
        return fail(txn, 13, "route " .. key .. " = " .. target .. " is not "
            .. (tls and "https://ip:port (this HAProxy speaks TLS to targets)" or "ip:port"))
    end
    local host, port = (rest or first):match("^(%d+%.%d+%.%d+%.%d+):(%d+)$")
    if not host then
        return fail(txn, 13, "route " .. key .. " = " .. target .. " is not ip:port")
    end
    txn:set_var("txn.dst_ip", host)
    txn:set_var("txn.dst_port", tonumber(port))
end)
