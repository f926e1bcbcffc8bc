--- tlscache: automatic TLS client session caching and resumption.
-- The work is done in C (tlscache.core); this layer only re-exports it.
local core = require "tlscache.core"

local M = {}
for k, v in pairs(core) do M[k] = v end

return M
