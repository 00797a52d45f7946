wrk.method = "POST"
local f = io.open("/tmp/wrkb/body.bin", "rb")
wrk.body = f:read("*all")
f:close()
wrk.headers["Content-Type"] = "application/octet-stream"
wrk.headers["Inference-Header-Content-Length"] = "197"
